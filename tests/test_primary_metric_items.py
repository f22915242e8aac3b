"""The primary metric (``song_id``) and the other matched identifications (``genre_id``, ``id50_time``) behave like
every identification (issue 27): an interval over recordings, per-item rows in ``items.csv``, and the report's
verdict on ``song_id`` computed from those rows (the paired bootstrap over recordings).

The data are built so the expected answers follow from the construction, not from the code: 10 NMED-T songs x 4
subjects = 40 recordings of 10 windows; subjects 0 and 1 "respond" (prediction = true audio + a little noise),
subjects 2 and 3 do not (noise only), so every window of a recording agrees and the recordings differ a lot.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from chanmusic.stages.align import AlignedTestMetrics, write_test_items

N_SONGS, N_SUBJ, N_T, D, LENGTH = 10, 4, 10, 32, 100
MATCHED = ("song_id", "genre_id", "id50_time")


def _batch(responds: bool, seed: int = 0) -> dict:
    from datamodules.songs import genre_index

    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(N_SONGS, N_T, D, generator=torch.Generator().manual_seed(99))  # one audio per (song, t)
    song = torch.arange(N_SONGS).repeat_interleave(N_SUBJ * N_T)
    subj = torch.arange(N_SUBJ).repeat_interleave(N_T).repeat(N_SONGS)
    t = torch.arange(N_T).repeat(N_SONGS * N_SUBJ)
    clap = audio[song, t]
    noise = torch.randn(len(song), D, generator=g)
    live = (subj < 2)[:, None] if responds else torch.zeros(len(song), 1, dtype=torch.bool)
    emb = torch.where(live, clap + 0.3 * noise, noise)
    return {"emb": emb, "clap": clap, "music": song * N_T + t, "song": song,
            "genre": torch.tensor([genre_index(int(s)) for s in song]), "stimulus": song, "start": t * LENGTH,
            "length": torch.full_like(song, LENGTH), "segment": torch.arange(len(song)),
            "recording": song * N_SUBJ + subj, "subject": subj}


def _score(batch: dict) -> tuple[dict, AlignedTestMetrics]:
    tm = AlignedTestMetrics(id_repeats=4, id_seed=0)
    for i in range(0, len(batch["emb"]), 64):  # in batches, as the stage feeds it
        tm.update(batch["emb"][i:i + 64], {k: v[i:i + 64] for k, v in batch.items() if k != "emb"})
    results, _ = tm.compute(lambda *_: None)
    return results, tm


def test_matched_identifications_have_recording_intervals_and_per_item_rows():
    results, tm = _score(_batch(responds=True))
    for name in MATCHED:
        r = results[name]
        assert r["ci95_over"] == "recordings", name
        lo, hi = r["ci95"]
        wlo, whi = r["ci95_windows"]
        # half the recordings near 1, half near chance: over 40 clusters the interval is about 2.5x as wide as
        # over 400 windows (binomial sd sqrt(p(1-p)/400) vs the spread of 40 recording means)
        assert hi - lo > 1.8 * (whi - wlo), (name, r["ci95"], r["ci95_windows"])
        assert lo <= r["mean"] <= hi
        items = tm.items["metrics"][name]
        assert len(items["hit"]) == N_SONGS * N_SUBJ * N_T
        assert items["recording"].tolist() == (np.arange(400) // N_T).tolist()
        # the per-item hits are the metric: their mean over the scored items is the mean in metrics.json
        assert np.nanmean(items["hit"]) == pytest.approx(r["mean"])
        # responders rank the truth first (nearly) always, non-responders near chance
        live = (np.arange(400) // N_T) % N_SUBJ < 2
        assert np.nanmean(items["hit"][live]) > 0.9 > 0.5 > np.nanmean(items["hit"][~live])


def _arm(out, control: bool, batch: dict) -> pd.DataFrame:
    results, tm = _score(batch)
    d = out / "runs" / "row" / "seed0" / ("control" if control else "music")
    (d / "align").mkdir(parents=True)
    (d / "status.json").write_text(json.dumps({"status": "done"}))
    entries = {k: v for k, v in results.items() if k in ("song_id", "id50", "within_song") + MATCHED}
    # metrics.json's song_id mean is deliberately wrong: the verdict must come from items.csv, not from here
    entries["song_id"] = {**entries["song_id"], "mean": 0.5}
    (d / "align" / "metrics.json").write_text(json.dumps(
        {"schema_version": 1, **entries, "checkpoint": {"step": 100, "rule": "last", "checkpoint": "x"}}))
    trainer = SimpleNamespace(lightning_module=SimpleNamespace(test_metrics=tm), datamodule=SimpleNamespace(
        cache=SimpleNamespace(recordings=[{"dataset": "nmed-t"}] * (N_SONGS * N_SUBJ))))
    return pd.read_csv(write_test_items(trainer, d / "align"))


def test_the_reports_song_id_verdict_is_the_paired_recording_bootstrap_of_items_csv(tmp_path):
    from chanmusic.report.rows import collect

    spec = {"rows": [{"name": "row", "label": "Row", "configs": []}], "seeds": [0],
            "metrics": ["song_id", "id50"], "primary_metric": "song_id", "profile": {}, "profile_name": "x",
            "title": "t"}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    music = _arm(tmp_path, False, _batch(responds=True))
    control = _arm(tmp_path, True, _batch(responds=False, seed=1))
    for name in MATCHED:
        assert {f"{name}_hit", f"{name}_rank"} <= set(music.columns)
    _, [row] = collect(tmp_path)
    c = row.cells["song_id"]
    # the gain is the mean over paired items of (music hit - control hit), read here with pandas alone
    j = music.merge(control, on="segment", suffixes=("_m", "_c")).dropna(subset=["song_id_hit_m", "song_id_hit_c"])
    assert c.gain == pytest.approx((j["song_id_hit_m"] - j["song_id_hit_c"]).mean())
    assert c.gain_ci95_kind == "recordings (paired bootstrap, 40 recordings)"
    assert c.gain_ci95[0] > 0.2 and row.verdict["primary"] == "song_id" and row.verdict["beats"] is True
    assert "song_id" not in row.verdict["secondary"] and "id50_time" in row.verdict["secondary"]
