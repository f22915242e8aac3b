"""The runner's engine (submitit), folds, progress lines and summary, with the fake worker (no training).

- SLURM without a cluster: fake ``sbatch`` / ``srun`` / ``sacct`` (tests/tooling/fake_runner.py) run each batch
  script submitit writes on this machine; the scripts are checked for the resources and the command.
- Local GPU pinning on a (simulated) multi-GPU node: ``CUDA_VISIBLE_DEVICES=0,1,2`` and 3 runs at a time.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from chanmusic import report
from chanmusic.report.console import summary
from chanmusic.runner import Runner, load_spec, plan_runs, save_spec
from chanmusic.runner.engine import EngineSettings, GpuPool, StepJob
from chanmusic.runner.progress import Progress
from chanmusic.runner.spec import parse_folds
from tooling.fake_runner import install_fake_slurm, read_calls, worker_cmd, write_fake_spec


def _run(spec_path: Path, out: Path, jobs: int = 1, engine: dict | None = None, **runner_kw) -> tuple[Runner, list]:
    s = load_spec(spec_path, "quick", None, None, out, engine=engine)
    out.mkdir(exist_ok=True)
    save_spec(s, out)
    lines: list[str] = []
    runner = Runner(s, out, worker_cmd=worker_cmd(spec_path.parent), printer=lines.append, jobs=jobs, **runner_kw)
    runner.prepare_caches = lambda plans: None      # the fake configs have no data to prepare
    return runner, lines


def test_slurm_jobs_carry_the_resources_and_the_step_command(tmp_path, monkeypatch):
    for k, v in install_fake_slurm(tmp_path / "bin", tmp_path / "slurm").items():
        monkeypatch.setenv(k, v)
    spec = write_fake_spec(tmp_path, rows=[{"name": "good", "label": "Good", "configs": ["good.yaml"]}],
                           ablations=[{"name": "pre", "label": "Pretrained", "pretrain": ["pre.yaml"],
                                       "configs": ["good.yaml"]}],
                           profile={"seeds": 1, "executor": {"executor": "slurm", "partition": "gpu", "account": "proj",
                                                             "gpus_per_job": 1, "cpus_per_job": 4}})
    out = tmp_path / "out"
    # the flags win over the spec's executor section
    runner, lines = _run(spec, out, jobs=4, engine={"time_min": 30, "account": "lab"})
    statuses = runner.run_all(plan_runs(runner.spec, out))
    assert [s["status"] for s in statuses] == ["done"] * 4, [s.get("error") for s in statuses]
    step = out / "runs" / "good" / "seed0" / "music" / "align"
    engine = json.loads((step / "engine.json").read_text())
    assert engine["executor"] == "slurm"
    script = (step / "submitit" / f"{engine['job_id']}_submission.sh").read_text()
    for flag in ("--partition=gpu", "--gpus-per-node=1", "--time=30", "--account=lab", "--cpus-per-task=4",
                 "--nodes=1", "--ntasks-per-node=1", "--job-name=chanmusic-align"):
        assert f"#SBATCH {flag}\n" in script, flag
    # the command: srun runs submitit's bootstrap on this step's folder, which runs the pickled StepJob
    assert re.search(rf"^srun .* -u -m submitit\.core\._submit {re.escape(str(step / 'submitit'))}$", script, re.M)
    import submitit

    job = submitit.SlurmJob(step / "submitit", engine["job_id"])
    fn = job.submission().function
    assert isinstance(fn, StepJob) and fn.command == worker_cmd(tmp_path) + [str(step / "job.json")]
    assert fn.env["OMP_NUM_THREADS"] == "4" and "CUDA_VISIBLE_DEVICES" not in fn.env  # SLURM sets the GPUs
    # every job went through sbatch (prepare aside: 1 pretraining + 4 runs), and the calls ran with 4 threads
    submitted = list((tmp_path / "slurm").glob("*.job"))
    assert len(submitted) == 5
    assert {c["threads"] for c in read_calls(out)} == {"4"}
    report.write_results(out)
    assert "Good" in (out / "results.md").read_text()


def test_local_runs_on_a_multi_gpu_node_get_one_gpu_each(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    rows = [{"name": f"r{i}", "label": f"R{i}", "configs": ["slow.yaml"]} for i in range(3)]
    spec = write_fake_spec(tmp_path, rows=rows, ablations=[], profile={"seeds": 1})
    out = tmp_path / "out"
    runner, _ = _run(spec, out, jobs=3)
    assert runner.threads == max(1, (os.cpu_count() or 1) // 3)
    runner.run_all(plan_runs(runner.spec, out))
    calls = read_calls(out)
    assert len(calls) == 6 and all(c["cuda"] in ("0", "1", "2") for c in calls)
    overlapping = [(a, b) for i, a in enumerate(calls) for b in calls[i + 1:]
                   if a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlapping, "the runs did not overlap: the test did not exercise pinning"
    assert all(a["cuda"] != b["cuda"] for a, b in overlapping)       # never two running jobs on one GPU
    engines = [json.loads(p.read_text()) for p in out.glob("runs/*/seed0/*/align/engine.json")]
    assert len(engines) == 6 and all(e["executor"] == "local" and len(e["gpus"]) == 1 for e in engines)


def test_local_runs_without_gpus_keep_the_environment(tmp_path, monkeypatch):
    """submitit's local executor sets CUDA_VISIBLE_DEVICES="" (hiding every GPU) unless told otherwise."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))      # no nvidia-smi: no GPU found
    spec = write_fake_spec(tmp_path, rows=[{"name": "good", "label": "Good", "configs": ["good.yaml"]}],
                           ablations=[], profile={"seeds": 1})
    out = tmp_path / "out"
    runner, _ = _run(spec, out)
    assert runner.gpus is None
    runner.run_all(plan_runs(runner.spec, out))
    assert [c["cuda"] for c in read_calls(out)] == [None, None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")        # one GPU: passed through, not pinned
    assert GpuPool.for_settings(EngineSettings()) is None
    with pytest.raises(ValueError, match=r"--gpus-per-job: 2 GPU\(s\) per job but only 1 GPU\(s\) visible \(3\)"):
        GpuPool.for_settings(EngineSettings(gpus_per_job=2))


def test_a_step_past_its_time_limit_fails_with_a_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLOW_S", "60")
    spec = write_fake_spec(tmp_path, rows=[{"name": "slow", "label": "Slow", "configs": ["slow.yaml"],
                                            "control": False}], ablations=[],
                           profile={"seeds": 1, "step_timeout_s": 2})
    out = tmp_path / "out"
    runner, lines = _run(spec, out)
    t0 = time.time()
    st = runner.run_all(plan_runs(runner.spec, out))[0]
    assert st["status"] == "failed" and st["error"].startswith(
        "chanmusic: error: step align: ran past its time limit of 2 s"), st["error"]
    assert time.time() - t0 < 30                                   # the 60-s step was ended, not waited for


def test_folds_run_every_row_once_per_held_out_group(tmp_path, monkeypatch):
    assert parse_folds("subjects k=5") == {"by": "subjects", "k": 5} and parse_folds("none") is None
    assert parse_folds("songs k=7") == {"by": "songs", "k": 7}
    with pytest.raises(ValueError, match="subjects k=5"):
        parse_folds("trials k=2")
    spec = write_fake_spec(tmp_path, rows=[{"name": "good", "label": "Good", "configs": ["good.yaml"]}],
                           ablations=[], profile={"seeds": 1, "folds": "subjects k=2"})
    out = tmp_path / "out"
    runner, lines = _run(spec, out)
    from chanmusic.runner import folds

    monkeypatch.setattr(folds, "subject_ids", lambda step, extra: [1, 2, 3, 4, 5])
    runner.run_all(plan_runs(runner.spec, out))
    assert json.loads((out / "folds.json").read_text())["test_subjects"] == [[1, 3, 5], [2, 4]]
    over = (out / "runs" / "good" / "fold1" / "seed0" / "control" / "align" / "compare_overrides.yaml").read_text()
    assert "split: subjects" in over and "test_subjects:\n  - 2\n  - 4" in over and "control: shift" in over
    spec_json, results = report.collect(out)
    cell = results[0].cells["id50"]
    assert results[0].seeds_done == 2 and cell.k == 2 and cell.gain == pytest.approx(0.25)


def test_subject_ids_come_from_the_prepared_cache(tmp_path):
    from chanmusic.runner.folds import assign, subject_ids
    from chanmusic.runner.plan import Step
    from datamodules.datamodule import NMEDDataModule

    root = tmp_path / "nmed-t"
    root.mkdir()
    (root / "song21_Imputed.mat").write_bytes(b"stand-in")
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"data: {{root: {root}, cache_dir: {tmp_path / 'cache'}}}\n")
    path = NMEDDataModule(root=str(root), cache_dir=str(tmp_path / "cache")).cache_path()
    path.mkdir(parents=True)
    (path / "recordings.json").write_text(json.dumps([{"subject": s, "song": 21} for s in (7, 3, 3, 12)]))
    assert subject_ids(Step("align", [cfg], [], {}), []) == [3, 7, 12]
    with pytest.raises(ValueError, match="k=4"):
        assign([3, 7, 12], 4)


def test_progress_estimates_what_remains_from_finished_runs(monkeypatch):
    from chanmusic.runner import progress as prog
    from chanmusic.runner.plan import RunPlan
    from chanmusic.runner.spec import Row

    a, b = Row("a", "A", []), Row("b", "B", [])
    plans = [RunPlan(a, 0, False, Path("x")), RunPlan(a, 0, True, Path("y")), RunPlan(b, 0, False, Path("z"))]
    clock = iter([0.0, 0.0, 60.0, 60.0])
    monkeypatch.setattr(prog.time, "time", lambda: next(clock))
    p = Progress(plans, jobs=1)                                  # t=0
    p.start(plans[0])                                            # t=0
    line = p.finish(plans[0], {"status": "done", "cpu_s": 50, "metrics": {"id50": {"mean": 0.5}}})   # t=60
    # a's control costs what a's music run cost; b has no finished run: the mean of all (60 s)
    assert line == "[compare] (1/3) a/seed0/music: done in 60 s (cpu 50 s) — id50 0.500  [60 s so far, ~2.0 min left]"
    p.start(plans[1])                                            # t=60
    assert p.remaining(80.0) == pytest.approx(40.0 + 60.0)       # 20 s into a 60-s run, then b
    assert p.remaining(200.0) == pytest.approx(6.0 + 60.0)       # past its estimate: a tenth of it still to go
    p.jobs = 2
    assert p.remaining(80.0) == pytest.approx(50.0)              # two at a time
    p.steps = {id(plans[0]): 1, id(plans[2]): 3}                 # b pretrains, aligns and reconstructs
    assert p.estimate(plans[2]) == pytest.approx(180.0) and p.estimate(plans[1]) == pytest.approx(60.0)


def test_summary_says_which_rows_beat_their_control(tmp_path):
    rows = [{"name": "good", "label": "Good", "configs": ["good.yaml"]},
            {"name": "flat", "label": "Flat", "configs": ["flat.yaml"]}]
    spec = write_fake_spec(tmp_path, rows=rows, ablations=[], profile={"seeds": 1})
    out = tmp_path / "out"
    runner, _ = _run(spec, out, jobs=2)
    runner.run_all(plan_runs(runner.spec, out))
    spec_json, results, _ = report.write_results(out)
    text = summary(out, spec_json, results, out / "report" / "index.html")
    # one seed, no per-item files: the gain's interval is the runs' own spread (std 0.03 over 10 draws each),
    # decided on the primary metric (song_id) only, and said so
    assert re.search(r"Good: beats its no-music control on song_id \(primary: song_id \+0\.250 "
                     r"\[0\.2\d\d, 0\.2\d\d\], within-run \(r=10\); no per-item files\)", text)
    assert "Flat: does NOT beat its no-music control on song_id (primary: song_id +0.000 [-0.0" in text
    assert "Verdict on the primary metric song_id" in text
    assert f"Listening report: file://{out.resolve()}/report/index.html" in text
    assert re.search(r"^Good\s+ours\s+0\.300 \[0\.2\d\d, 0\.3\d\d\]†", text, re.M)  # the table, with intervals
    spec2 = write_fake_spec(tmp_path, rows=rows, ablations=[], profile={"seeds": 2})   # 2 seeds: t over seeds
    out2 = tmp_path / "out2"
    runner, _ = _run(spec2, out2, jobs=2)
    runner.run_all(plan_runs(runner.spec, out2))
    text = summary(out2, *report.collect(out2))
    assert "Good: does NOT beat its no-music control on song_id (primary: song_id +0.300 [-0.335, 0.935]" in text


def test_rows_that_shorten_alike_keep_distinct_names():
    from chanmusic.report.console import text_table, unique_short_labels
    from chanmusic.report.rows import RowResult

    rows = [RowResult(name="labram", label="LaBraM (published weights)", section="main", status="done"),
            RowResult(name="labram_nmed", label="LaBraM (pretrained on NMED, as the authors)", section="main",
                      status="done"),
            RowResult(name="cbramod", label="CBraMod", section="main", status="done")]
    names = unique_short_labels(rows)
    assert names == {"LaBraM (published weights)": "labram",
                     "LaBraM (pretrained on NMED, as the authors)": "labram_nmed", "CBraMod": "CBraMod"}
    table = text_table(rows, ["id50"])
    assert re.search(r"^labram\s", table, re.M) and re.search(r"^labram_nmed\s", table, re.M)
