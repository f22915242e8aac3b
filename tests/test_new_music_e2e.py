"""Issue 32 end to end: the ``new_music_quick`` profile on tiny demo data, every step real (prepare, pretraining per
fold, alignment with its no-music control, reconstruction), finishing with per-fold and pooled tables; the
checkpoints' recorded training spans and the test items name no song of the wrong side."""
from __future__ import annotations

import json

import pytest
import yaml

from chanmusic.runner import DEFAULT_SPEC, EXPERIMENTS

SONGS = [0, 1, 2, 3]            # demo songs = NMED-T songs 21..24 (the demo generator's numbering)


def _songs_of_spans(spans: dict) -> set[int]:
    """Song ids of the recordings named ``nmed-t/<stimulus>/...`` (NMED-T stimulus 21 + i is song i)."""
    return {int(k.split("/")[1]) - 21 for k in spans}


@pytest.mark.slow
def test_new_music_quick_end_to_end(tmp_path, capsys):
    from chanmusic.evaluation.provenance import checkpoint_record

    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    q = raw["profiles"]["new_music_quick"]
    q["rows"] = ["channel_oriented"]
    q["folds"] = "songs k=2"
    q["demo_data"].update(n_subjects=2, duration_s=30.0, songs=SONGS)
    q["set"]["trainer"].update(max_epochs=1)
    q["set"]["data"].update(control_min_shift_s=4.0, batch_size=32)
    q["pretrain_set"]["trainer"].update(limit_train_batches=2)
    q["reconstruct_set"]["model"]["init_args"].update(max_generate=2, num_inference_steps=2)
    q["interpret"] = []
    raw["config_root"] = str(EXPERIMENTS)
    spec = tmp_path / "paper.yaml"
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "out"
    from chanmusic.cli import main

    main(["compare", "--config", str(spec), "--profile", "new_music_quick", "--out", str(out), "--no-report"])
    printed = capsys.readouterr().out
    folds = json.loads((out / "folds.json").read_text())["test_songs"]
    assert sorted(s for f in folds for s in f) == SONGS and all(len(f) == 2 for f in folds)
    for f, held in enumerate(folds):
        run = out / "runs" / "channel_oriented" / f"fold{f}" / "seed0"
        for arm in ("music", "control"):
            st = json.loads((run / arm / "status.json").read_text())
            assert st["status"] == "done", st.get("error")
            assert st["test_songs"] == held
        m = json.loads((run / "music" / "align" / "metrics.json").read_text())
        assert m["song_id"]["n_way"] == 2 and m["song_id"]["chance"] == pytest.approx(0.5)
        import pandas as pd

        items = pd.read_csv(run / "music" / "align" / "items.csv")
        assert set(items["song"]) == set(held)                           # tested on the held-out songs only
        assert items["song_id_hit"].notna().all() and m["song_id"]["ci95_over"] == "recordings"   # primary metric: per item
        # what the pretraining and the alignment trained on, as their checkpoints record it
        pre = next((out / "runs" / "_pretrain").glob(f"*/fold{f}/seed0/pretrain/checkpoints/final.ckpt"))
        ali = next((run / "music" / "align" / "checkpoints").glob("final.ckpt"))
        for ck in (pre, ali):
            rec = checkpoint_record(ck)
            trained = _songs_of_spans(rec["train_spans"])
            assert trained == set(SONGS) - set(held), ck
        # the ridge adapter was fitted on exactly the alignment's training windows (no held-out song among them)
        from chanmusic.core.ridge import RidgeAdapter

        assert RidgeAdapter.load(run / "music" / "reconstruct" / "ridge.safetensors").n_train == \
            checkpoint_record(ali)["split"]["n_train"]
        assert (run / "music" / "reconstruct" / "metrics.json").is_file()
    md = (out / "results.md").read_text()
    assert "## Main table" in md and "## Per fold" in md
    for f in range(2):
        assert f"### fold{f}: holds out songs" in md and f"fold{f} (holds out songs" in printed
    assert "pooled over folds × seeds: 2" in printed
    assert "has no interval for its gain" not in printed                  # every verdict from paired items
