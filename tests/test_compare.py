"""``chanmusic compare``: spec, resumable runner (with a fake worker, no training), aggregation math.

The runner is driven with a stand-in worker script (``tests/tooling/fake_runner.py``) that behaves like
``python -m chanmusic.runner.worker --worker JOB``: it reads the job, writes ``metrics.json`` / checkpoints /
``result.json`` the way the real worker does, and logs every call, so the tests take seconds. One real tiny
end-to-end ``compare --quick --rows linear_reference --seeds 1`` is marked slow.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from chanmusic import report
from chanmusic.runner import (DEFAULT_SPEC, EXPERIMENTS, Runner, acquire_lock, data_settings, load_spec, plan_runs,
                              read_status, save_spec, write_status)
from chanmusic.runner.worker import reuse_ridge
from tooling.fake_runner import read_calls, worker_cmd, write_fake_spec

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def fake(tmp_path):
    """A spec with a good row, a crashing row, a row whose YAML is missing and a pretrained row."""
    path = write_fake_spec(tmp_path)
    out = tmp_path / "out"

    def run(rows=None, redo=(), jobs=1):
        s = load_spec(path, "quick", rows, None, out)
        out.mkdir(exist_ok=True)
        save_spec(s, out)
        lines = []
        runner = Runner(s, out, redo=set(redo), worker_cmd=worker_cmd(tmp_path), printer=lines.append, jobs=jobs)
        runner.prepare_caches = lambda plans: None   # the fake configs have no data to prepare
        runner.run_all(plan_runs(s, out))
        return lines

    return {"run": run, "calls": lambda: read_calls(out), "out": out, "spec": path}


def test_paper_spec_has_the_papers_rows_and_numbers(tmp_path):
    s = load_spec(DEFAULT_SPEC, "quick", out=tmp_path / "x")
    names = [r.name for r in s.rows if r.section == "main"]
    assert names == ["linear_reference", "audio_oracle", "eeg2mel", "labram", "labram_nmed", "eegpt", "cbramod",
                     "channel_oriented"]
    assert [r.name for r in s.rows if r.section == "ablation"] == [
        "no_pretraining", "block_tokens", "no_channel_dropout", "encoder_fixed", "linear_head_finetuned",
        "linear_head_frozen"]
    assert s.row("audio_oracle").kind == "reconstruct"
    ours = s.row("channel_oriented")
    assert ours.pretrain and ours.paper == {"clap_score": 0.683, "id50": 0.487, "song14": 0.692, "genre_agreement": 0.203}
    assert s.row("cbramod").paper["id50"] == 0.402 and s.row("labram_nmed").paper["song14"] == 0.681
    assert s.row("labram_nmed").pretrain and not s.row("labram").paper  # the authors' LaBraM was pretrained on NMED
    assert s.row("eeg2mel").paper["clap_score"] == 0.588
    assert s.profile["demo_data"]["root"] == str(tmp_path / "x" / "data" / "nmed-t") and s.seeds == [0]
    assert load_spec(DEFAULT_SPEC, "full").seeds == list(range(5))
    with pytest.raises(ValueError, match="unknown"):
        load_spec(DEFAULT_SPEC, "quick", rows=["nope"])


def test_runner_runs_records_failures_and_never_drops_rows(fake):
    lines = fake["run"]()
    out = fake["out"]
    assert len([l for l in lines if l.startswith("[compare] (")]) == 16  # 4 rows x 2 seeds x (music, control)
    good = read_status(out / "runs" / "good" / "seed1" / "music")
    assert good["status"] == "done" and good["metrics"]["id50"]["mean"] == pytest.approx(0.4)
    crash = read_status(out / "runs" / "crash" / "seed0" / "music")
    assert crash["status"] == "failed" and crash["error"].startswith("chanmusic: error: ")
    assert "log.txt: RuntimeError: boom in the model — the step's worker crashed" in crash["error"]
    missing = read_status(out / "runs" / "missing" / "seed0" / "control")
    assert missing["status"] == "failed" and missing["error"].startswith("chanmusic: error: ")
    assert "missing.yaml: config not found — " in missing["error"]
    # pretraining: one run per seed, shared by the music and control runs, its checkpoint passed on
    pre_calls = [c for c in fake["calls"]() if "_pretrain" in c["dir"]]
    assert len(pre_calls) == 2
    align = [c for c in fake["calls"]() if "/runs/pre/" in c["dir"] and c["dir"].endswith("align")]
    assert len(align) == 4 and all("--model.init_args.init_from" in c["args"] for c in align)
    # the reconstruction step: test + predict (nothing trained) on the aligned run's selected checkpoint
    recon = [c for c in fake["calls"]() if c["dir"].endswith("reconstruct")]
    assert len(recon) == 4 and all(c["commands"] == ["test", "predict"] for c in recon)
    for c in recon:
        i = c["args"].index("--model.init_args.init_from")
        assert c["args"][i + 1] == str(Path(c["dir"]).parent / "align" / "checkpoints" / "best.ckpt")
    st = read_status(out / "runs" / "pre" / "seed0" / "music")
    assert set(st["steps"]) == {"pretrain", "align", "reconstruct"}
    # the table keeps every row; failed ones say why
    report.write_results(out)
    md = (out / "results.md").read_text()
    for label in ("Good", "Crashes", "Missing YAML", "Pretrained"):
        assert label in md
    assert "failed: seed0 align: chanmusic: error: " in md and "RuntimeError: boom in the model" in md
    assert "config not found" in md
    csv_text = (out / "results.csv").read_text()
    assert "crash" in csv_text and "missing" in csv_text
    assert (out / "plots" / "metric_id50.png").is_file() and (out / "plots" / "ablations.png").is_file()


def test_runner_skips_finished_runs_and_retries_failed(fake):
    fake["run"]()
    n = len(fake["calls"]())
    fake["run"]()
    again = fake["calls"]()[n:]
    # only the crashing row is retried (the missing YAML fails before any subprocess); done runs are skipped
    assert {Path(c["dir"]).parts[-4] for c in again} == {"crash"}
    fake["run"](rows=["good"], redo=["good"])
    redone = fake["calls"]()[n + len(again):]
    assert len(redone) == 4 and all("/runs/good/" in c["dir"] for c in redone)


def test_killed_run_is_resumed_from_last_ckpt_or_redone(fake):
    fake["run"](rows=["good"])
    out = fake["out"]
    n = len(fake["calls"]())
    # killed during fit with a checkpoint: status running, no result; resumed from last.ckpt
    d = out / "runs" / "good" / "seed0" / "music"
    st = read_status(d)
    st["status"] = "running"
    st["steps"] = {}
    write_status(d, st)
    for f in ("fit_done.json", "result.json", "metrics.json"):
        (d / "align" / f).unlink(missing_ok=True)
    # killed before any status or checkpoint: redone from scratch, stale files removed
    k = out / "runs" / "good" / "seed1" / "control"
    (k / "status.json").unlink()
    import shutil

    shutil.rmtree(k / "align" / "checkpoints")
    (k / "align" / "stale.txt").write_text("from the killed run")
    # killed with a corrupt checkpoint: resume fails, the step is redone from scratch
    c = out / "runs" / "good" / "seed1" / "music"
    write_status(c, {"status": "running"})
    (c / "align" / "checkpoints" / "last.ckpt").write_text("corrupt")
    (c / "align" / "fit_done.json").unlink()
    fake["run"](rows=["good"])
    new = fake["calls"]()[n:]
    by_dir = {}
    for call in new:
        by_dir.setdefault("/".join(Path(call["dir"]).parts[-3:-1]), []).append(call["resume"])
    assert by_dir["seed0/music"] == [str(d / "align" / "checkpoints" / "last.ckpt")]
    assert by_dir["seed1/control"] == [None] and not (k / "align" / "stale.txt").exists()
    assert by_dir["seed1/music"] == [str(c / "align" / "checkpoints" / "last.ckpt"), None]
    kept = list((c / "align" / "superseded").glob("*/checkpoints/last.ckpt"))   # the failed resume kept its files
    assert [p.read_text() for p in kept] == ["corrupt"]
    assert "seed0/control" not in by_dir                      # finished: not redone
    for name in ("seed0/music", "seed1/music", "seed1/control"):
        assert read_status(out / "runs" / "good" / name)["status"] == "done"


def test_half_written_status_counts_as_killed(fake):
    fake["run"](rows=["good"])
    d = fake["out"] / "runs" / "good" / "seed0" / "music"
    (d / "status.json").write_text('{"status": "do')
    assert read_status(d) is None


# ---------------------------------------------------------------------------------------------- math
def test_seed_aggregation_math_on_known_numbers():
    s = report.seed_summary([0.1, 0.2, 0.3])
    assert s["mean"] == pytest.approx(0.2) and s["std"] == pytest.approx(0.1)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)         # t(0.975, df=2)
    assert s["ci95"] == pytest.approx((0.2 - half, 0.2 + half))
    w = report.within_run_summary(0.5, 0.1, 10)             # std 0.1 with ddof=0 over 10 repeats
    s1 = 0.1 * math.sqrt(10 / 9)
    half = 2.2621571627409915 * s1 / math.sqrt(10)          # t(0.975, df=9)
    assert w["ci95"] == pytest.approx((0.5 - half, 0.5 + half)) and w["ci95_kind"] == "within-run (r=10)"
    g = report.gain_summary({0: {"mean": 0.3}, 1: {"mean": 0.5}}, {0: {"mean": 0.1}, 1: {"mean": 0.1}}, {})
    half = 12.706204736174707 * math.sqrt(0.02) / math.sqrt(2)  # differences 0.2, 0.4: std sqrt(0.02), df=1
    assert g["gain"] == pytest.approx(0.3) and g["ci95"] == pytest.approx((0.3 - half, 0.3 + half))
    g1 = report.gain_summary({0: {"mean": 0.3, "std": 0.1}}, {0: {"mean": 0.1, "std": 0.1}}, {0: 10})
    se = math.sqrt(2 * (0.1 * math.sqrt(10 / 9)) ** 2 / 10)
    assert g1["ci95"] == pytest.approx((0.2 - 2.2621571627409915 * se, 0.2 + 2.2621571627409915 * se))
    # a metric with one number per run and no spread (e.g. embedding_spread): a gain, no interval
    g2 = report.gain_summary({0: {"mean": 0.3, "n": 50}}, {0: {"mean": 0.1, "n": 50}}, {0: 50})
    assert g2["gain"] == pytest.approx(0.2) and g2["ci95"] is None


def test_collect_aggregates_over_seeds_with_control_and_paper(fake):
    fake["run"](rows=["good"])
    spec, results = report.collect(fake["out"])
    good = next(r for r in results if r.name == "good")
    c = good.cells["id50"]
    assert good.status == "done" and good.seeds_done == 2
    assert c.mean == pytest.approx(0.35) and c.std == pytest.approx(math.sqrt(0.005)) and c.k == 2
    assert c.control == pytest.approx(0.05) and c.gain == pytest.approx(0.30) and c.gain_ci95_kind == "seeds (paired)"
    assert c.paper == 0.487 and c.chance == 0.02 and c.n == 100
    assert c.ci95 == pytest.approx((0.35 - 12.706204736174707 * 0.05, 0.35 + 12.706204736174707 * 0.05))


@pytest.mark.slow
def test_quick_end_to_end_linear_reference(tmp_path):
    """A real (tiny) ``chanmusic compare --quick --rows linear_reference --seeds 1``: small demo data, 1 epoch."""
    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    q = raw["profiles"]["quick"]
    q["demo_data"].update(n_subjects=2, duration_s=30.0)
    q["set"]["trainer"].update(max_epochs=1)
    q["reconstruct"] = False
    raw["config_root"] = str(EXPERIMENTS)
    spec = tmp_path / "paper.yaml"
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "out"
    from chanmusic.cli import main

    main(["compare", "--config", str(spec), "--quick", "--rows", "linear_reference", "--seeds", "1", "--out", str(out),
          "--", "--data.test_fraction", "0.2", "--data.batch_size", "32",
          "--data.control_min_shift_s", "4", "--data.stride_s", "2.1"])  # 30-s recordings: a 30-s minimum shift cannot fit; a 2.1-s hop is not a whole number of bars
    st = read_status(out / "runs" / "linear_reference" / "seed0" / "music")
    assert st["status"] == "done", st.get("error")
    assert read_status(out / "runs" / "linear_reference" / "seed0" / "control")["status"] == "done"
    md = (out / "results.md").read_text()
    assert "Linear reference" in md and "gain over control" in md
    # issue 27: both arms scored at the last step of one budget, per-item files, intervals over recordings
    import json

    import pandas as pd

    arms = [out / "runs" / "linear_reference" / "seed0" / arm / "align" for arm in ("music", "control")]
    ms = [json.loads((d / "metrics.json").read_text()) for d in arms]
    assert ms[0]["checkpoint"]["step"] == ms[1]["checkpoint"]["step"] > 0
    assert {m["checkpoint"]["rule"] for m in ms} == {"last"}
    # every identification, the primary metric song_id included: intervals over recordings and per-item rows
    items = [pd.read_csv(d / "items.csv") for d in arms]
    assert items[0]["segment"].tolist() == items[1]["segment"].tolist()
    assert {"recording", "subject", "song", "dataset"} <= set(items[0].columns)
    for name in ("id50", "song_id", "id50_time"):
        if name == "id50_time" and ms[0][name] is None:  # no other song's test window at the same time: null
            assert name in ms[0]["unavailable"] and f"{name}_hit" not in items[0].columns
            continue
        assert ms[0][name]["ci95_over"] == "recordings" and len(ms[0][name]["ci95_windows"]) == 2, name
        assert {f"{name}_hit", f"{name}_rank"} <= set(items[0].columns), name
    assert items[0]["song_id_hit"].notna().sum() == ms[0]["song_id"]["n"]
    # the verdict on song_id is the paired bootstrap over recordings of the two items.csv files
    assert "Verdict on `song_id` (the primary metric)" in md
    [row] = report.collect(out)[1]
    assert row.verdict["primary"] == "song_id" and row.verdict["beats"] is not None
    assert row.cells["song_id"].gain_ci95_kind.startswith("recordings (paired bootstrap, ")
    assert (out / "report" / "index.html").is_file()
    assert (out / "interpretation" / "linear_reference_dissimilarity.png").is_file()


def test_one_runner_per_output_folder(tmp_path):
    """The lock is an OS file lock: refused while another process holds it, free once that process is gone."""
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from chanmusic.runner.lock import "
                               f"acquire_lock; held = acquire_lock({str(tmp_path)!r}); print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=rf"--out {tmp_path}: in use by runner {holder.pid} on "):
            acquire_lock(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    lock = acquire_lock(tmp_path)                            # a killed runner leaves no stale lock
    with pytest.raises(ValueError, match="in use"):          # and a second runner in this process is refused too
        acquire_lock(tmp_path)
    lock.release()
    acquire_lock(tmp_path).release()


def test_predict_reuses_the_ridge_that_test_fitted(tmp_path):
    from types import SimpleNamespace

    from lightning.pytorch.utilities.parsing import AttributeDict

    model = SimpleNamespace(hparams=AttributeDict(ridge_path=None))
    assert reuse_ridge(model, tmp_path) == []                  # nothing saved yet
    (tmp_path / "ridge.safetensors").write_bytes(b"x")
    assert reuse_ridge(model, tmp_path) == ["--model.init_args.ridge_path", str(tmp_path / "ridge.safetensors")]
    assert model.hparams.ridge_path == str(tmp_path / "ridge.safetensors")
    assert reuse_ridge(SimpleNamespace(hparams=AttributeDict(lr=1.0)), tmp_path) == []  # not a reconstruction


def test_parallel_runs_share_one_pretraining_and_match_sequential(fake):
    lines = fake["run"](jobs=3)
    out = fake["out"]
    assert len([l for l in lines if l.startswith("[compare] (")]) == 16
    pre_calls = [c for c in fake["calls"]() if "_pretrain" in c["dir"]]
    assert len(pre_calls) == 2                                   # one per seed, despite 4 runs wanting it at once
    spec, results = report.collect(out)
    status = {r.name: r.status for r in results}
    assert status == {"good": "done", "crash": "failed", "missing": "failed", "pre": "done"}
    assert next(r for r in results if r.name == "good").cells["id50"].mean == pytest.approx(0.35)


def test_data_settings_follow_the_cli_order(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("data: {root: x, window_s: 2.0, batch_size: 64}\nmodel: {}\n")
    b.write_text("data: {window_s: 8.0}\n")
    d = data_settings([a, b], {"cache_dir": "c"}, ["--trainer.max_epochs", "1", "--data.root", "/r",
                                                   "--data.batch_size=32"])
    assert d == {"root": "/r", "window_s": 8.0, "batch_size": 32, "cache_dir": "c"}
