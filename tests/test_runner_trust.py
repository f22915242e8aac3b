"""The runner on a (simulated) cluster: failures visible to the scheduler, detached plans, their status.

SLURM is the fake ``sbatch`` / ``srun`` / ``sacct`` of tests/tooling/fake_runner.py (each batch script runs here,
after the jobs its ``--dependency`` names); the worker is the fake worker (no training).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import submitit

from chanmusic.runner import Runner, load_spec, plan_runs, read_status, save_spec
from chanmusic.runner.detach import read_detached, submit_plan
from chanmusic.runner.status import status_lines
from tooling.fake_runner import install_fake_slurm, read_calls, worker_cmd, write_fake_spec

SLURM = {"executor": "slurm", "time_min": 5}
ROWS = [{"name": "good", "label": "Good", "configs": ["good.yaml"], "control": False},
        {"name": "crash", "label": "Crashes", "configs": ["crash.yaml"], "control": False}]


@pytest.fixture()
def slurm(tmp_path, monkeypatch):
    for k, v in install_fake_slurm(tmp_path / "bin", tmp_path / "slurm").items():
        monkeypatch.setenv(k, v)
    return tmp_path


def test_a_failed_step_is_a_failed_submitit_job_and_the_runner_goes_on(slurm):
    spec = write_fake_spec(slurm, rows=ROWS, ablations=[], profile={"seeds": 1})
    out = slurm / "out"
    s = load_spec(spec, "quick", None, None, out, engine=SLURM)
    out.mkdir()
    save_spec(s, out)
    runner = Runner(s, out, worker_cmd=worker_cmd(slurm), printer=lambda line: None)
    runner.prepare_caches = lambda plans: None
    statuses = runner.run_all(plan_runs(s, out))
    assert [st["status"] for st in statuses] == ["done", "failed"]       # the crash did not stop the good row
    assert statuses[1]["error"].startswith("chanmusic: error: ")          # the runner's record, from the log
    assert "RuntimeError: boom in the model" in statuses[1]["error"]
    for row, failed in (("good", False), ("crash", True)):
        step = out / "runs" / row / "seed0" / "music" / "align"
        job_id = json.loads((step / "engine.json").read_text())["job_id"]
        exc = submitit.SlurmJob(step / "submitit", job_id).exception()    # what the scheduler's side sees
        assert (exc is not None) == failed, exc
        if failed:
            assert "StepFailed: step command exited with code 1" in str(exc)
            assert read_status(step.parent)["steps"]["align"]["status"] == "failed"   # and the runner's record


def _wait_for(predicate, timeout_s: float = 240.0) -> None:
    t0 = time.time()
    while not predicate():
        assert time.time() - t0 < timeout_s, "the detached jobs did not finish"
        time.sleep(0.5)


def test_detach_submits_the_plan_with_dependencies_and_status_follows_it(slurm, capsys):
    spec = write_fake_spec(slurm, rows=ROWS, ablations=[{"name": "pre", "label": "Pretrained",
                                                         "pretrain": ["pre.yaml"], "configs": ["good.yaml"]}],
                           profile={"seeds": 1})
    out = slurm / "out"
    s = load_spec(spec, "quick", None, None, out, engine=SLURM)
    out.mkdir()
    save_spec(s, out)
    t0 = time.time()
    jobs = submit_plan(s, out, worker_cmd=worker_cmd(slurm), prepare=False, printer=lambda line: None)
    assert time.time() - t0 < 60 and read_detached(out) == jobs            # it returns without waiting
    assert set(jobs["runs"]) == {"good/seed0/music", "crash/seed0/music", "pre/seed0/music", "pre/seed0/control"}
    pre_job = next(iter(jobs["pretrain"].values()))
    folder = out / "detached" / "submitit"
    # the scripts carry the dependencies: runs of the pretrained row after its pretraining, the report after all
    script = (folder / f"{jobs['runs']['pre/seed0/control']}_submission.sh").read_text()
    assert f"#SBATCH --dependency=afterany:{pre_job}\n" in script
    report = (folder / f"{jobs['report']}_submission.sh").read_text()
    assert "#SBATCH --dependency=afterany:" + ":".join(jobs["runs"].values()) + "\n" in report
    _wait_for(lambda: (out / "results.md").is_file())
    states = {label: read_status(out / "runs" / Path(label))["status"] for label in jobs["runs"]}
    assert states == {"good/seed0/music": "done", "crash/seed0/music": "failed", "pre/seed0/music": "done",
                      "pre/seed0/control": "done"}
    # the pretraining ran once, before both of its runs (the fake SLURM honours the dependency)
    calls = read_calls(out)
    pre = [c for c in calls if "/pretrain/" in c["dir"] + "/"]
    runs_of_pre = [c for c in calls if "/runs/pre/" in c["dir"]]
    assert len(pre) == 1 and all(c["start"] >= pre[0]["end"] for c in runs_of_pre)
    # the failed run is a failed job; a done one is not
    assert submitit.SlurmJob(folder, jobs["runs"]["crash/seed0/music"]).exception() is not None
    assert submitit.SlurmJob(folder, jobs["runs"]["good/seed0/music"]).exception() is None
    lines = status_lines(out, {k: f"job {v}" for k, v in jobs["runs"].items()})
    crash = next(line for line in lines if line.startswith("crash/seed0/music"))
    assert "failed" in crash and "at align: chanmusic: error: " in crash and "RuntimeError: boom in the model" in crash
    assert crash.endswith(f"[job {jobs['runs']['crash/seed0/music']}]")
    assert lines[-1] == "4 runs: 3 done, 1 failed"
    # the command line: `chanmusic compare --status OUT`, with each run's job and its state from sacct
    from chanmusic.runner.compare import main

    capsys.readouterr()
    main(["--status", str(out)])
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 5 and printed[-1] == "4 runs: 3 done, 1 failed"
    good = next(line for line in printed if line.startswith("good/seed0/music"))
    assert good.endswith(f"[SLURM job {jobs['runs']['good/seed0/music']}: COMPLETED]") and " done " in good


def test_detach_needs_slurm_and_status_needs_a_compare_folder(tmp_path):
    spec = write_fake_spec(tmp_path, rows=ROWS, ablations=[], profile={"seeds": 1})
    s = load_spec(spec, "quick", None, None, tmp_path / "out")
    with pytest.raises(ValueError, match=r"^--detach: detaching needs the SLURM executor .* — add --executor slurm"):
        submit_plan(s, tmp_path / "out")
    with pytest.raises(ValueError, match=r"--status .*: no spec.json: no comparison was started in this folder"):
        status_lines(tmp_path)


def test_status_of_a_folder_part_way(tmp_path):
    """Where each run stands, from the status files alone (no jobs)."""
    from chanmusic.runner.status import write_status

    spec = write_fake_spec(tmp_path, rows=ROWS, ablations=[], profile={"seeds": 1})
    out = tmp_path / "out"
    s = load_spec(spec, "quick", None, None, out)
    out.mkdir()
    save_spec(s, out)
    write_status(out / "runs" / "good" / "seed0" / "music",
                 {"status": "done", "metrics": {"id50": {"mean": 0.4321}}})
    assert status_lines(out) == [f"{'good/seed0/music':<40} {'done':<12} id50 0.432",
                                 f"{'crash/seed0/music':<40} not started",
                                 "2 runs: 1 done, 1 not started"]


STEP = '''
import json, sys, time
from pathlib import Path
job = json.loads(Path(sys.argv[1]).read_text())
d = Path(job["dir"])
with open(d / "attempts.jsonl", "a") as f:
    f.write(json.dumps({"resume": job["resume"]}) + "\\n")
if job["resume"] is None:        # the first attempt: a checkpoint, then it runs until preempted
    (d / "checkpoints").mkdir(exist_ok=True)
    (d / "checkpoints" / "last.ckpt").write_text("epoch 1")
    time.sleep(120)
'''


def _submitit_process(pid: int) -> int | None:
    """The ``submitit.core._submit`` process under ``pid`` (the fake batch script's process)."""
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            if b"submitit.core._submit" in Path(f"/proc/{p}/cmdline").read_bytes():
                return p
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            continue
    return None


def test_a_preempted_step_is_requeued_and_resumes_from_its_last_checkpoint(slurm):
    """SIGUSR2 (what SLURM sends before preempting) on the job: submitit calls StepJob.checkpoint, requeues the job
    (the fake `scontrol requeue`), and the next attempt runs with the resume set to the interrupted one's last.ckpt."""
    import signal
    import sys
    import threading

    from chanmusic.runner.engine import EngineSettings
    from chanmusic.runner.execute import submit_and_wait

    step = slurm / "step"
    step.mkdir()
    (slurm / "step.py").write_text(STEP)
    (step / "job.json").write_text(json.dumps({"dir": str(step), "resume": None}))
    out: dict = {}
    waiter = threading.Thread(target=lambda: out.update(r=submit_and_wait(
        [sys.executable, str(slurm / "step.py"), str(step / "job.json")], step, "align", None,
        EngineSettings(executor="slurm", time_min=60), job_json=step / "job.json")))
    waiter.start()
    _wait_for(lambda: (step / "checkpoints" / "last.ckpt").is_file(), 120)
    job_id = json.loads((step / "engine.json").read_text())["job_id"]
    pid = json.loads((slurm / "slurm" / f"{job_id}.job").read_text())["pid"]
    target = _submitit_process(pid)
    assert target is not None
    os.kill(target, signal.SIGUSR2)                     # the preemption notice
    waiter.join(240)
    assert not waiter.is_alive()
    rc, _, error = out["r"]
    assert (rc, error) == (0, None)
    attempts = [json.loads(line)["resume"] for line in (step / "attempts.jsonl").read_text().splitlines()]
    assert attempts == [None, str(step / "checkpoints" / "last.ckpt")]
    assert json.loads((slurm / "slurm" / f"{job_id}.job").read_text())["restarts"] == 1


def test_detach_and_status_through_the_chanmusic_command(slurm):
    """`chanmusic compare ... --executor slurm --detach` returns at once with the plan submitted; `chanmusic compare
    --status OUT` then prints every run with its SLURM job. Real command line (``python -m chanmusic.cli``), fake
    SLURM on PATH, the fake worker through $CHANMUSIC_WORKER (how a cluster user would put it in a container)."""
    import subprocess
    import sys

    spec = write_fake_spec(slurm, rows=ROWS, ablations=[], profile={"seeds": 1})
    out = slurm / "out"
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, CHANMUSIC_WORKER=" ".join(worker_cmd(slurm)),
               PYTHONPATH=os.pathsep.join([str(root)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    cli = [sys.executable, "-m", "chanmusic.cli", "compare"]
    t0 = time.time()
    r = subprocess.run(cli + ["--config", str(spec), "--profile", "quick", "--out", str(out), "--executor", "slurm",
                              "--time", "5", "--detach"], capture_output=True, text=True, env=env, cwd=slurm,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = read_detached(out)
    assert set(jobs["runs"]) == {"good/seed0/music", "crash/seed0/music"} and jobs["prepare"] and jobs["report"]
    assert not (out / "results.md").exists() or time.time() - t0 < 300   # it did not wait for the runs
    _wait_for(lambda: (out / "results.md").is_file())
    r = subprocess.run(cli + ["--status", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == "2 runs: 1 done, 1 failed", r.stdout
    good = next(line for line in lines if line.startswith("good/seed0/music"))
    crash = next(line for line in lines if line.startswith("crash/seed0/music"))
    assert " done " in good and good.endswith(f"[SLURM job {jobs['runs']['good/seed0/music']}: COMPLETED]")
    assert "at align: chanmusic: error: " in crash and "RuntimeError: boom in the model" in crash
    assert crash.endswith(f"[SLURM job {jobs['runs']['crash/seed0/music']}: FAILED]")
    # every step ran in the fake worker named by $CHANMUSIC_WORKER (none in the real one)
    assert {Path(c["dir"]).name for c in read_calls(out)} == {"align"}
