"""Online probe (callbacks.probe): kNN and linear probes match their references; during pretraining the probe
rises above chance when the EEG carries music shared across subjects, and stays at chance when it carries only
recording fingerprints (which make within-recording song decoding trivial)."""
import math
import warnings

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from callbacks.probe import OnlineProbe, knn_accuracy, ridge_accuracy
from chanmusic.stages.pretrain import PretrainModule
from encoders.channel_oriented import ChannelOrientedEncoder

C, SFREQ, T = 8, 64.0, 64
N_SUBJ, N_SONGS, PER_REC = 8, 4, 8


def test_knn_matches_lightly_and_ridge_matches_sklearn():
    from lightly.utils.benchmarking import knn_predict
    from sklearn.linear_model import RidgeClassifier
    from sklearn.preprocessing import StandardScaler

    g = torch.Generator().manual_seed(0)
    bank, query = torch.randn(200, 16, generator=g), torch.randn(50, 16, generator=g)
    b_lab, q_lab = torch.randint(0, 5, (200,), generator=g), torch.randint(0, 5, (50,), generator=g)
    b_grp, q_grp = torch.full((200,), 1), torch.full((50,), 0)  # no bank row shares the queries' group
    ref = knn_predict(torch.nn.functional.normalize(query, dim=1), torch.nn.functional.normalize(bank, dim=1).T,
                      b_lab, 5, 20, 0.1)[:, 0]
    assert knn_accuracy(query, q_lab, q_grp, bank, b_lab, b_grp, 20, 0.1) == pytest.approx(
        float((ref == q_lab).float().mean()))
    # the own group is skipped: a bank that is the queries themselves (same group) plus noise rows
    same = knn_accuracy(query, q_lab, q_grp, torch.cat([query, bank]), torch.cat([q_lab, b_lab]),
                        torch.cat([q_grp, b_grp]), 20, 0.1)
    assert same == pytest.approx(float((ref == q_lab).float().mean()))

    b_grp = torch.randint(0, 3, (200,), generator=g)
    q_grp = torch.randint(0, 3, (50,), generator=g)
    correct = 0
    for grp in range(3):
        fit, use = (b_grp != grp).numpy(), (q_grp == grp).numpy()
        sc = StandardScaler().fit(bank.numpy()[fit])
        clf = RidgeClassifier(alpha=0.5 * fit.sum()).fit(sc.transform(bank.numpy()[fit]), b_lab.numpy()[fit])
        correct += int((clf.predict(sc.transform(query.numpy()[use])) == q_lab.numpy()[use]).sum())
    assert ridge_accuracy(query, q_lab, q_grp, bank, b_lab, b_grp, 0.5) == pytest.approx(correct / 50)


class ToyWindows(Dataset):
    """Windows of N_SUBJ subjects × N_SONGS songs. Each recording (subject × song) has a fingerprint: its own
    oscillation (frequency, channel gains), strong. With ``music``, each song adds a response shared by all
    subjects: a song-specific frequency with a fixed channel pattern (random phase per window)."""

    def __init__(self, music: bool, part: str, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        t = torch.arange(T) / SFREQ
        song_freq = torch.tensor([3.0, 7.0, 11.0, 17.0])
        song_gain = torch.randn(N_SONGS, C, generator=g)
        rec_freq = 2.0 + 25.0 * torch.rand(N_SUBJ, N_SONGS, generator=g)
        rec_gain = 1.5 * torch.randn(N_SUBJ, N_SONGS, C, generator=g)
        gp = torch.Generator().manual_seed(seed + (1 if part == "train" else 2))
        self.items = []
        for s in range(N_SUBJ):
            for k in range(N_SONGS):
                for j in range(PER_REC):
                    ph = torch.rand(2, generator=gp) * 2 * math.pi
                    x = rec_gain[s, k, :, None] * torch.sin(2 * math.pi * rec_freq[s, k] * t + ph[0])
                    if music:
                        x = x + song_gain[k, :, None] * torch.sin(2 * math.pi * song_freq[k] * t + ph[1])
                    x = x + 0.5 * torch.randn(C, T, generator=gp)
                    self.items.append({"eeg": x.float(), "channel_mask": torch.ones(C, dtype=torch.bool),
                                       "song": k, "subject": s, "segment": len(self.items), "music": k * 100 + j})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class ToyData(L.LightningDataModule):
    def __init__(self, music: bool):
        super().__init__()
        self.parts = {"train": ToyWindows(music, "train"), "val": ToyWindows(music, "val")}

    def dataset_for(self, part):
        return self.parts[part]

    def train_dataloader(self):
        return DataLoader(self.parts["train"], batch_size=32, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.parts["val"], batch_size=64)


def _pretrain_and_probe(music: bool, steps: int = 20):
    torch.manual_seed(0)
    enc = ChannelOrientedEncoder(C, SFREQ, T, embed_dim=32, depth=1, num_heads=2, patch_size=16)
    module = PretrainModule(enc, out_dim=64, head_hidden_dim=64, bottleneck_dim=16, n_global=2, n_local=2,
                            channel_dropout=0.25, channel_dropout_mode="random", lr=1e-3, momentum_start=0.99,
                            collapse_monitor=False)
    probe = OnlineProbe(max_bank=1000, max_queries=1000, batch_size=128)
    trainer = L.Trainer(max_steps=steps, val_check_interval=steps, check_val_every_n_epoch=None,
                        limit_val_batches=1, logger=False,
                        accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, callbacks=[probe], num_sanity_val_steps=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, datamodule=ToyData(music))
    return probe.history


def test_probe_rises_above_chance_with_music_and_not_without():
    # windows of one recording share its fingerprint, so they err together: the unit of chance is the recording
    n = N_SUBJ * N_SONGS
    chance = 1 / N_SONGS
    margin = 3 * math.sqrt(chance * (1 - chance) / n)
    hist = _pretrain_and_probe(music=True)
    assert [s for s, _ in hist] == [0, 20]  # before training and after the validation
    after = hist[-1][1]
    assert after["probe/song_chance"] == pytest.approx(chance)
    assert after["probe/song_mean_linear"] > chance + margin, after
    assert max(after[f"probe/song_{f}_knn"] for f in ("cls", "mean")) > chance + margin, after
    quiet = _pretrain_and_probe(music=False)[-1][1]  # fingerprints only: other subjects cannot name the song
    for key in ("song_cls_knn", "song_mean_knn", "song_cls_linear", "song_mean_linear"):
        assert quiet[f"probe/{key}"] < chance + margin, (key, quiet)
