"""Stand-ins for the runner's tests: a fake worker (no training), a small spec, and a fake SLURM (sbatch, srun,
sacct as scripts on ``PATH``) that runs each submitted batch script on this machine.

The fake worker behaves like ``python -m chanmusic.runner.worker --worker JOB``: it reads the job, writes
``metrics.json`` / checkpoints / ``result.json`` the way the real worker does, and appends every call (with its
``CUDA_VISIBLE_DEVICES``, ``OMP_NUM_THREADS`` and start/end times) to ``OUT/calls.jsonl``.
"""
from __future__ import annotations

import itertools
import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import yaml

FAKE_WORKER = textwrap.dedent('''
    """Stand-in for `python -m chanmusic.runner.worker --worker JOB` (see tests/tooling/fake_runner.py)."""
    import json, os, sys, time
    from pathlib import Path

    t0 = time.time()
    job = json.loads(Path(sys.argv[1]).read_text())
    d = Path(job["dir"])
    text = "\\n".join(Path(c).read_text() for c in job["configs"])
    if "behaviour: slow" in text:
        time.sleep(float(os.environ.get("FAKE_SLOW_S", "1.0")))
    call = {"dir": str(d), "resume": job["resume"], "args": job["args"], "commands": job["commands"],
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "threads": os.environ.get("OMP_NUM_THREADS"),
            "start": t0, "end": time.time()}
    with open(d.parents[4] / "calls.jsonl", "a") as f:
        f.write(json.dumps(call) + "\\n")
    if "behaviour: crash" in text:
        print("Traceback (most recent call last):")
        print("RuntimeError: boom in the model")
        sys.exit(1)
    if job["resume"] and Path(job["resume"]).read_text() == "corrupt":
        print("RuntimeError: cannot load corrupt checkpoint")
        sys.exit(1)
    ck = d / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    (ck / "last.ckpt").write_text("ok")
    (ck / "best.ckpt").write_text("ok")
    (d / "fit_done.json").write_text(json.dumps({"checkpoint": str(ck / "best.ckpt")}))
    res = {"status": "done", "checkpoint": str(ck / "best.ckpt"), "commands": ["chanmusic fit ..."]}
    if "test" in job["commands"]:
        control = "control: shift" in text
        seed = int(next(l.split(":")[1] for l in text.splitlines() if l.startswith("seed_everything")))
        base = 0.05 if control or "behaviour: flat" in text else 0.30 + 0.1 * seed
        m = {"id50": {"mean": base, "std": 0.02, "n": 100, "chance": 0.02},
             "song_id": {"mean": base + 0.1, "std": 0.03, "n": 100, "chance": 0.1}}
        (d / "metrics.json").write_text(json.dumps(m))
        res["metrics"] = str(d / "metrics.json")
    (d / "result.json").write_text(json.dumps(res))
''')


def write_fake_spec(tmp: Path, rows: list[dict] | None = None, ablations: list[dict] | None = None,
                    profile: dict | None = None) -> Path:
    """A spec in ``tmp`` over behaviour-only configs (ok, crash, flat, slow, pretrain, reconstruct); default rows:
    a good row, a crashing row, a row whose YAML is missing; one pretrained ablation. Returns the spec path."""
    cfg = tmp / "cfg"
    cfg.mkdir(exist_ok=True)
    for name in ("good", "crash", "flat", "slow", "pre", "recon"):
        (cfg / f"{name}.yaml").write_text(f"behaviour: {'ok' if name == 'good' else name}\n")
    spec = {
        "title": "fake comparison", "config_root": str(cfg), "metrics": ["id50", "song_id"],
        "reconstruct": {"configs": ["recon.yaml"], "ckpt_arg": "model.init_args.init_from"},
        "reference_row": "good",
        "rows": rows if rows is not None else [
            {"name": "good", "label": "Good", "configs": ["good.yaml"], "paper": {"id50": 0.487}},
            {"name": "crash", "label": "Crashes", "configs": ["crash.yaml"]},
            {"name": "missing", "label": "Missing YAML", "configs": ["nope/missing.yaml"]},
        ],
        "ablations": ablations if ablations is not None else [
            {"name": "pre", "label": "Pretrained", "pretrain": ["pre.yaml"], "configs": ["good.yaml"],
             "reconstruct": True}],
        "profiles": {"quick": {"seeds": 2, "base": [], "reconstruct": False, "description": "fake",
                               **(profile or {})}},
    }
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    (tmp / "fake_worker.py").write_text(FAKE_WORKER)
    return path


def worker_cmd(tmp: Path) -> list[str]:
    """The command that stands in for the real worker (``JOB.json`` is appended by the runner)."""
    return [sys.executable, str(tmp / "fake_worker.py")]


def read_calls(out: Path) -> list[dict]:
    p = out / "calls.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


# ------------------------------------------------------------------------------------------------ fake SLURM
_INSTALLS = itertools.count()
SBATCH = textwrap.dedent('''
    #!{python}
    """fake sbatch: give the script a job id and run it here in the background, as SLURM would on a node (after
    the jobs its --dependency names have ended)."""
    import json, os, subprocess, sys
    from pathlib import Path

    state = Path(os.environ["FAKE_SLURM_DIR"])
    state.mkdir(parents=True, exist_ok=True)
    jid = int(os.environ.get("FAKE_SLURM_FIRST_ID", "4000"))
    while True:
        try:
            fd = os.open(state / f"{{jid}}.job", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            jid += 1
    script = sys.argv[-1]
    env = dict(os.environ, SLURM_JOB_ID=str(jid), SLURM_NTASKS="1", SLURM_PROCID="0", SLURM_LOCALID="0",
               SLURM_NODEID="0", SLURM_JOB_NUM_NODES="1", SLURM_JOB_NODELIST="fakenode", SLURM_JOB_NAME="fake")
    log = open(state / f"{{jid}}.sbatch.log", "w")
    # --dependency (argv or #SBATCH line): wait until those jobs' processes have ended (any way), then run
    text = Path(script).read_text()
    deps = ([a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--dependency=")] +
            [l.split("=", 1)[1].strip() for l in text.splitlines() if l.startswith("#SBATCH --dependency=")])
    after = [j for d in deps for cond in d.split(",") for j in cond.split(":")[1:]]
    waiter = ("import json, sys, time, os\\nfrom pathlib import Path\\n"
              "for j in sys.argv[2:]:\\n"
              "    f = Path(sys.argv[1]) / (j + '.job')\\n"
              "    while True:\\n"
              "        try:\\n"
              "            pid = json.loads(f.read_text())['pid']\\n"
              "            if 'zombie' in Path(f'/proc/{{pid}}/status').read_text().lower(): break\\n"
              "        except (OSError, ValueError, KeyError): break\\n"
              "        time.sleep(0.2)\\n")
    cmd = ["bash", script] if not after else (
          ["bash", "-c", '"' + sys.executable + '" -c "$0" "$1" "${{@:3}}" && exec bash "$2"', waiter, str(state), script,
           *after])
    # the job's exit code, for sacct (FAILED when it is not 0, as SLURM reports it)
    cmd = ["bash", "-c", 'rc=0; "$@" || rc=$?; echo $rc > "$0"', str(state / f"{{jid}}.rc"), *cmd]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    os.write(fd, json.dumps({{"pid": proc.pid, "argv": sys.argv[1:]}}).encode())
    os.close(fd)
    print(f"Submitted batch job {{jid}}")
''')

SRUN = textwrap.dedent('''
    #!/bin/bash
    # fake srun: drop the options, send the task's output where --output / --error say, run it
    out=/dev/null; err=""
    while [[ "$1" == --* ]]; do
      case "$1" in
        --output) out="$2"; shift 2;;
        --error) err="$2"; shift 2;;
        *) shift;;
      esac
    done
    out="${out//%j/$SLURM_JOB_ID}"; out="${out//%t/0}"
    if [[ -n "$err" ]]; then err="${err//%j/$SLURM_JOB_ID}"; err="${err//%t/0}"; else err="$out"; fi
    exec "$@" >> "$out" 2>> "$err"
''')

SACCT = textwrap.dedent('''
    #!{python}
    """fake sacct: RUNNING while the job's process lives, then COMPLETED (exit code 0) or FAILED."""
    import json, os, sys
    from pathlib import Path

    state = Path(os.environ["FAKE_SLURM_DIR"])
    ids = sys.argv[sys.argv.index("-j") + 1].split(",") if "-j" in sys.argv else []
    print("JobID|State|NodeList")
    for jid in ids:
        f = state / f"{{jid}}.job"
        if not f.exists():
            continue
        pid = json.loads(f.read_text() or "{{}}").get("pid")
        try:
            alive = pid is not None and "zombie" not in Path(f"/proc/{{pid}}/status").read_text().lower()
        except OSError:
            alive = False
        rc = state / f"{{jid}}.rc"
        failed = rc.is_file() and rc.read_text().strip() not in ("", "0")
        print(f"{{jid}}|{{'RUNNING' if alive else ('FAILED' if failed else 'COMPLETED')}}|fakenode")
''')


SCONTROL = textwrap.dedent('''
    #!{python}
    """fake scontrol: `requeue JID` runs the job's batch script again once its current process has ended."""
    import json, os, subprocess, sys
    from pathlib import Path

    if sys.argv[1:2] != ["requeue"]:
        sys.exit(0)
    state = Path(os.environ["FAKE_SLURM_DIR"])
    jid = sys.argv[2]
    f = state / f"{{jid}}.job"
    job = json.loads(f.read_text())
    restarts = job.get("restarts", 0) + 1
    env = dict(os.environ, SLURM_JOB_ID=jid, SLURM_RESTART_COUNT=str(restarts))
    again = f"while kill -0 {{job['pid']}} 2>/dev/null; do sleep 0.2; done; exec bash {{job['argv'][-1]}}"
    log = open(state / f"{{jid}}.requeue.log", "a")
    proc = subprocess.Popen(["bash", "-c", again], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    f.write_text(json.dumps({{**job, "pid": proc.pid, "restarts": restarts}}))
''')


def install_fake_slurm(bin_dir: Path, state_dir: Path) -> dict[str, str]:
    """Write the fake ``sbatch`` / ``srun`` / ``sacct`` / ``scancel`` / ``scontrol requeue`` into ``bin_dir``; returns the environment
    changes (``PATH`` first, ``FAKE_SLURM_DIR``) that make submitit use them."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    scripts = {"sbatch": SBATCH.format(python=sys.executable), "srun": SRUN,
               "sacct": SACCT.format(python=sys.executable), "scancel": "#!/bin/bash\nexit 0\n",
               "scontrol": SCONTROL.format(python=sys.executable)}
    for name, text in scripts.items():
        p = bin_dir / name
        p.write_text(text.lstrip("\n"))
        p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    # job ids never repeat within one test process: submitit's job watcher is process-wide and remembers a finished
    # id, so a later test's job with the same id counted as done before it ran (a flake: "did not finish")
    first = 4000 + 1000 * next(_INSTALLS)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "FAKE_SLURM_DIR": str(state_dir),
            "FAKE_SLURM_FIRST_ID": str(first)}
