"""Online probe during pretraining: does the representation carry the music? (kNN on frozen features.)

Self-distillation logs losses and entropies, which say the stage runs, not that it learns anything useful.
:class:`OnlineProbe` measures it: at the start of training and after every ``every_n_epochs``-th validation
it embeds windows of the train split (the bank) and of the validation split (the queries) with the frozen
encoder (the EMA teacher by default) and classifies each query by a weighted k-nearest-neighbour vote
(cosine similarity, weights ``exp(sim / temperature)``, as lightly's ``knn_predict``) for two labels:

- ``song``: which song was heard;
- ``music``: which music segment (the same audio window, whoever heard it).

**Other subjects only.** Each subject × song is one recording with its own noise signature, so a
neighbour from the same recording would name the song from the noise alone. The bank of a query holds only
windows of *other* subjects: what the vote can use is a response to the music that subjects share, and with
EEG that carries no music the probe stays at chance.

Logged (TensorBoard, ``trainer.logger``) at the global step: ``probe/<label>_<feature>`` (accuracy) and
``probe/<label>_chance`` (1 / number of distinct labels among the queries), for features ``cls`` (the
encoder's pooled output, what pretraining trains) and ``mean`` (mean of CLS and the present tokens, what the
linear readout reads). ``history`` keeps ``(step, {name: value})``. Add in YAML::

    trainer:
      callbacks:
        - class_path: callbacks.probe.OnlineProbe
          init_args: {every_n_epochs: 1, max_bank: 2000, max_queries: 500}
"""
from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, Subset

from chanmusic.core.ridge import ridge_weights
from datamodules.windows import collate_batch
from encoders.base import masked_mean

LABELS = ("song", "music")
FEATURES = ("cls", "mean")


def knn_accuracy(query: Tensor, q_labels: Tensor, q_groups: Tensor, bank: Tensor, b_labels: Tensor,
                 b_groups: Tensor, k: int = 20, temperature: float = 0.1) -> float:
    """Weighted kNN top-1 accuracy of ``query [Q, D]`` against ``bank [N, D]`` (both L2-normalised inside),
    skipping bank rows of the query's own group (``q_groups [Q]`` vs ``b_groups [N]``: the subject).

    Vote of label ``y`` = sum of ``exp(cos / temperature)`` over the ``k`` most similar bank rows with label ``y``."""
    q = F.normalize(query.float(), dim=-1)
    b = F.normalize(bank.float(), dim=-1)
    sim = q @ b.T
    sim = sim.masked_fill(q_groups[:, None] == b_groups[None, :], float("-inf"))
    k = min(k, int((b_groups[None, :] != q_groups[:, None]).sum(1).min()))
    if k < 1:
        return float("nan")
    top, idx = sim.topk(k, dim=1)
    classes, inv = torch.unique(torch.cat([b_labels, q_labels]), return_inverse=True)
    b_lab = inv[: len(b_labels)]
    votes = torch.zeros(len(q), len(classes)).scatter_add_(1, b_lab[idx], (top / temperature).exp())
    pred = votes.argmax(1)
    return float((pred == inv[len(b_labels):]).float().mean())


def ridge_accuracy(query: Tensor, q_labels: Tensor, q_groups: Tensor, bank: Tensor, b_labels: Tensor,
                   b_groups: Tensor, alpha: float = 1.0) -> float:
    """Linear-probe top-1 accuracy, other groups only: for each query group (subject) ``g``, a ridge regression
    from standardised features to one-hot labels is fitted on the bank rows of the other groups (closed form,
    ``chanmusic.core.ridge.ridge_weights``, penalty ``alpha`` per row of the fit) and scores ``g``'s queries (``query [Q, D]``, ``bank [N, D]``)."""
    classes, inv = torch.unique(torch.cat([b_labels, q_labels]), return_inverse=True)
    b_lab, q_lab = inv[: len(b_labels)], inv[len(b_labels):]
    correct = 0
    for g in torch.unique(q_groups):
        fit, use = b_groups != g, q_groups == g
        if int(fit.sum()) < 2:
            return float("nan")
        X = bank[fit].double()
        mu, sd = X.mean(0), X.std(0, unbiased=False).clamp_min(1e-6)
        X = (X - mu) / sd
        Y = torch.nn.functional.one_hot(b_lab[fit], len(classes)).double()
        prior = Y.mean(0)  # the intercept (features are centred)
        W = ridge_weights(X, Y - prior, alpha * len(X))
        pred = (((query[use].double() - mu) / sd) @ W + prior).argmax(1)
        correct += int((pred == q_lab[use]).sum())
    return correct / len(query)


class OnlineProbe(L.Callback):
    """kNN probe of frozen features on song and music-segment labels, other subjects only (see module doc).

    Args:
        every_n_epochs: probe after every n-th validation epoch (and once before training).
        max_bank, max_queries: train / validation windows used (evenly spaced subsets, fixed per run).
        k, temperature: the kNN vote.
        encoder: attribute of the stage holding the encoder to probe (``"teacher_encoder"``, else ``"encoder"``).
        batch_size: windows per forward pass.
    """

    def __init__(self, every_n_epochs: int = 1, max_bank: int = 2000, max_queries: int = 500, k: int = 20,
                 temperature: float = 0.1, encoder: str = "teacher_encoder", batch_size: int = 128,
                 alpha: float = 0.1):
        super().__init__()
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.max_bank, self.max_queries = int(max_bank), int(max_queries)
        self.k, self.temperature, self.encoder_name, self.batch_size = int(k), float(temperature), encoder, batch_size
        self.alpha = float(alpha)
        self.history: list[tuple[int, dict[str, float]]] = []

    def _encoder(self, pl_module: L.LightningModule):
        enc = getattr(pl_module, self.encoder_name, None)
        return enc if enc is not None else pl_module.encoder

    @torch.no_grad()
    def _features(self, encoder, dm, part: str, limit: int) -> dict[str, Tensor]:
        ds = dm.dataset_for(part)
        n = len(ds)
        rows = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(int)) if n else np.zeros(0, int)
        feats: dict[str, list[Tensor]] = {f: [] for f in FEATURES}
        labels: dict[str, list[Tensor]] = {"song": [], "music": [], "subject": []}
        seg = getattr(getattr(dm, "cache", None), "segments", None)
        dev = next(encoder.parameters()).device
        loader = DataLoader(Subset(ds, rows.tolist()), batch_size=self.batch_size, shuffle=False,
                            collate_fn=collate_batch)
        for batch in loader:
            mask = batch["channel_mask"].to(dev)
            out = encoder(batch["eeg"].to(dev), mask)
            feats["cls"].append(out.pooled.float().cpu())
            toks = torch.cat([out.pooled.unsqueeze(1), out.tokens], 1)
            tmask = None if out.token_mask is None else torch.cat([out.token_mask.new_ones(len(toks), 1),
                                                                   out.token_mask.bool()], 1)
            feats["mean"].append(masked_mean(toks, tmask).float().cpu())
            labels["song"].append(batch["song"].cpu())
            labels["subject"].append(batch["subject"].cpu())
            # the true music segment (batch["music"] is the shifted one under the no-music control)
            music = torch.as_tensor(np.asarray(seg)[batch["segment"].numpy(), 5]) if seg is not None else batch["music"]
            labels["music"].append(music.cpu())
        return {k: torch.cat(v) for k, v in {**feats, **labels}.items() if v}

    def probe(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Run the probe now; returns ``{"probe/<label>_<feature>": acc, "probe/<label>_chance": p}``."""
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "dataset_for"):
            return {}
        encoder = self._encoder(pl_module)
        was_training = encoder.training
        encoder.eval()
        try:
            bank = self._features(encoder, dm, "train", self.max_bank)
            query = self._features(encoder, dm, "val", self.max_queries)
        finally:
            encoder.train(was_training)
        if not bank or not query:
            return {}
        res: dict[str, float] = {}
        for label in LABELS:
            for f in FEATURES:
                res[f"probe/{label}_{f}_knn"] = knn_accuracy(query[f], query[label], query["subject"], bank[f],
                                                             bank[label], bank["subject"], self.k, self.temperature)
                res[f"probe/{label}_{f}_linear"] = ridge_accuracy(query[f], query[label], query["subject"], bank[f],
                                                                  bank[label], bank["subject"], self.alpha)
            res[f"probe/{label}_chance"] = 1.0 / max(1, len(torch.unique(query[label])))
        return res

    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        res = self.probe(trainer, pl_module)
        if not res:
            return
        self.history.append((int(trainer.global_step), res))
        if trainer.logger is not None and trainer.is_global_zero:
            trainer.logger.log_metrics(res, step=int(trainer.global_step))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:
            self._run(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        self._run(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

