"""The notebook API (``chanmusic.load_run`` -> ``run.embed`` / ``run.evaluate``) on a tiny trained run.

The reference for ``run.embed(raw)`` is the CLI path: the stage's ``predict_step`` on the windows of the prepared
cache (what ``chanmusic predict`` writes), which ``run.embed`` does not use: it preprocesses the Raw itself.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import mne
import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"


@pytest.fixture(scope="module")
def run_dir(demo_root, tmp_path_factory):
    """A linear-reference alignment run fitted for two batches, with a band-pass, an average reference and a
    resampling to 62.5 Hz in its data settings (so each must be applied by run.embed as prepare applied it)."""
    from chanmusic.cli import lightning_main

    tmp = tmp_path_factory.mktemp("notebook")
    args = ["--config", str(EXP / "demo.yaml"), "--config", str(EXP / "align/default.yaml"),
            "--config", str(EXP / "encoders/linear_reference.yaml"),
            "--model.init_args.encoder.init_args.embed_dim", "16",
            "--data.root", str(demo_root), "--data.cache_dir", str(tmp / "cache"), "--data.batch_size", "16",
            "--data.bandpass", "[1, 20]", "--data.average_reference", "true", "--data.resample", "62.5",
            "--trainer.default_root_dir", str(tmp / "runs"), "--trainer.logger.init_args.save_dir", str(tmp / "runs"),
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false"]
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = lightning_main(args, run=False)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    finally:
        sys.argv = argv
    return Path(cli.trainer.log_dir)


def _raw_of_first_recording(demo_root: Path, subject: int | None = None, song: int | None = None):
    from datamodules.nmed.reader import read_recordings

    rec = next(iter(read_recordings(demo_root, "nmed-t", songs=None if song is None else [song],
                                    subjects=None if subject is None else [subject])))
    info = mne.create_info(list(rec.ch_names), rec.sfreq, "eeg")
    return rec, mne.io.RawArray(rec.eeg.astype(np.float64) * 1e-6, info, verbose="error")   # MNE: volts


def test_embed_of_a_raw_is_the_cli_embedding(run_dir, demo_root):
    import chanmusic

    run = chanmusic.load_run(run_dir)
    # the CLI path: the stage's predict on the prepared cache's test windows
    import lightning as L

    trainer = L.Trainer(logger=False, accelerator="cpu", devices=1, enable_progress_bar=False)
    preds = trainer.predict(run.model, datamodule=run.datamodule)
    cli_emb = torch.cat([p["embedding"] for p in preds])
    segment = torch.cat([p["segment"] for p in preds]).numpy()
    cache = run.datamodule.cache
    r = int(np.bincount(cache.segments[segment, 0]).argmax())         # the recording with most test windows
    mine = cache.segments[segment, 0] == r
    assert mine.sum() >= 2, "the recording has no test windows: the test would check nothing"
    rec, raw = _raw_of_first_recording(demo_root, cache.recordings[r]["subject"], cache.recordings[r]["song"])
    # an MNE object without channel positions is fine: channels are mapped by name and take the run's montage's
    # positions (without matching names it is one line naming the fix: test_embed_refuses_what_it_cannot_map)
    assert raw.get_montage() is None
    emb = run.embed(raw)
    assert emb.missing == [] and emb.ignored == [] and run.sfreq == 62.5
    hop = int(round(run.datamodule.stride_s * run.sfreq))
    starts = cache.segments[segment[mine], 3]
    assert (starts % hop == 0).all()
    got = emb.embedding[starts // hop]
    np.testing.assert_allclose(got.numpy(), cli_emb[torch.from_numpy(mine)].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(emb.start_s[starts // hop], starts / 62.5)
    # the same EEG as an array in µV gives the same embeddings; channels in another order map back by name
    order = np.random.default_rng(0).permutation(len(rec.ch_names))
    again = run.embed(rec.eeg[order], ch_names=[rec.ch_names[i] for i in order], sfreq=rec.sfreq)
    np.testing.assert_allclose(again.embedding.numpy(), emb.embedding.numpy(), rtol=1e-4, atol=1e-5)


def test_embed_maps_missing_and_extra_channels_and_epochs(run_dir, demo_root):
    import chanmusic

    run = chanmusic.load_run(run_dir)
    rec, raw = _raw_of_first_recording(demo_root)
    part = raw.copy().drop_channels(rec.ch_names[:3]).rename_channels({rec.ch_names[3]: "Fpz-extra"})
    emb = run.embed(part)
    assert emb.missing == list(rec.ch_names[:4]) and emb.ignored == ["Fpz-extra"]
    epochs = mne.make_fixed_length_epochs(raw, duration=8.0, verbose="error")
    e = run.embed(epochs)
    n_per = int((8.0 - run.datamodule.window_s) // run.datamodule.stride_s) + 1
    assert e.embedding.shape[0] == len(epochs) * n_per and list(np.unique(e.epoch)) == list(range(len(epochs)))


@pytest.mark.parametrize("case, message", [
    ("slow", r"run\.embed: sfreq: the EEG is at 50 Hz, below the run's 62\.5 Hz .* — record at 62\.5 Hz or more"),
    ("odd", r"run\.embed: sfreq: 127\.31 Hz -> 62\.5 Hz has no exact polyphase ratio .* — resample to 62\.5 Hz first"),
    ("names", r"run\.embed: channel names: none of the input's 125 channel names \(EEG 000, .*\) is in the run's "
              r"montage .* — rename the channels"),
    ("array", r"run\.embed\(array\): an array needs its channel names and sampling rate — call run\.embed\(x, "),
    ("misc", r"run\.embed\(Raw\): no EEG channels \(channel types: \['misc'\]\) — set the types"),
])
def test_embed_refuses_what_it_cannot_map(run_dir, demo_root, case, message):
    import chanmusic

    run = chanmusic.load_run(run_dir)
    rec, raw = _raw_of_first_recording(demo_root)
    x = {"slow": lambda: mne.io.RawArray(raw.get_data(), mne.create_info(rec.ch_names, 50.0, "eeg"), verbose="error"),
         "odd": lambda: mne.io.RawArray(raw.get_data(), mne.create_info(rec.ch_names, 127.31, "eeg"),
                                        verbose="error"),
         "names": lambda: raw.copy().rename_channels({n: f"EEG {i:03d}" for i, n in enumerate(rec.ch_names)}),
         "array": lambda: rec.eeg,
         "misc": lambda: mne.io.RawArray(raw.get_data(), mne.create_info(rec.ch_names, 125.0, "misc"),
                                         verbose="error")}[case]()
    with pytest.raises(ValueError, match=message) as e:
        run.embed(x)
    assert "\n" not in str(e.value)


def test_the_readme_notebook_example_runs(run_dir, demo_root, capsys):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- notebook example:.*?-->\n```python\n(.*?)```", text, re.S).group(1)
    _, raw = _raw_of_first_recording(demo_root)
    exec(compile(block, "README.md", "exec"), {"RUN_DIR": str(run_dir), "raw": raw})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"Run({run_dir}, AlignModule, 125 channels at 62.5 Hz, 2-s windows)")
    assert out[1].startswith("torch.Size([")
    assert 0.0 <= float(out[-1]) <= 1.0                       # id50 of the run's test split
    assert not any(Path(run_dir).glob("metrics.json.*"))      # the run's own folder was not written to
