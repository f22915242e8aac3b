"""What the runner records in ``OUT``: each run's ``status.json``, ``OUT/spec.json``, and the lines it prints.

``status.json`` (one per run folder and per shared pretraining) says ``running``, ``done`` or ``failed`` (with
the error and the step that failed), each step's result (checkpoint, ``metrics.json`` path, seconds, CPU
seconds, the equivalent ``chanmusic`` command lines) and the run's merged metrics. It is written atomically;
a half-written one (the runner was killed) reads as missing. ``chanmusic report`` reads these files.
"""
from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from chanmusic.results.metrics_file import metric_entries, read_json
from chanmusic.runner.spec import Spec

STATUS = "status.json"


def read_status(d: Path) -> dict | None:
    """A run's ``status.json``; ``None`` when missing or half-written (the runner was killed): treat as missing."""
    return read_json(Path(d) / STATUS)


def write_status(d: Path, status: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (STATUS + ".tmp")
    tmp.write_text(json.dumps(status, indent=2, default=str))
    os.replace(tmp, d / STATUS)


def now() -> str:
    """The current UTC time, ISO 8601 to the second (the time stamps in status and log files)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def first_line(text: str) -> str:
    for line in str(text).strip().splitlines():
        if line.strip():
            return line.strip()[:300]
    return "unknown error"


def error_from_log(log: Path, rc: int | None) -> str:
    """The most telling line of a crashed worker's log: the last exception line, else the last line."""
    try:
        lines = [l.rstrip() for l in log.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        lines = []
    exc = [l for l in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*", l)]
    if exc:
        return exc[-1][:300]
    tail = lines[-1][:300] if lines else ""
    return f"worker exited with code {rc}" + (f": {tail}" if tail else "")


def step_outputs_exist(res: dict) -> bool:
    """Whether the files a finished step's result names (metrics, checkpoint) are still there."""
    return all(Path(res[k]).is_file() for k in ("metrics", "checkpoint") if res.get(k))


def merged_metrics(status: dict) -> dict:
    """Union of the steps' metrics.json (later steps win), as stored in a run's status."""
    merged: dict = {}
    for name in ("align", "reconstruct"):
        res = (status.get("steps") or {}).get(name) or {}
        if res.get("status") == "done" and res.get("metrics"):
            m = read_json(Path(res["metrics"]))
            if m:
                merged.update(metric_entries(m))
    return merged


def save_spec(spec: Spec, out: Path) -> None:
    """OUT/spec.json: merged with an earlier one so rows run by earlier calls (other --rows) stay listed."""
    path = out / "spec.json"
    d = spec.to_json()
    old = read_json(path)
    if old and old.get("profile_name") == spec.profile_name:
        names = {r["name"] for r in d["rows"]}
        rank = {n: i for i, n in enumerate(spec.row_order)}
        rows = d["rows"] + [r for r in old.get("rows", []) if r["name"] not in names]
        d["rows"] = sorted(rows, key=lambda r: rank.get(r["name"], len(rank)))
        d["seeds"] = sorted(set(d["seeds"]) | set(old.get("seeds", [])))
    path.write_text(json.dumps(d, indent=2, default=str))


def status_lines(out: Path, jobs: dict[str, str] | None = None) -> list[str]:
    """``chanmusic compare --status OUT``: one line per planned run (from ``OUT/spec.json``) saying where it
    stands (done with its first metric, failed at which step and why, running which step, not started), with
    ``jobs[label]`` (a detached run's SLURM job and state) appended, then the counts."""
    from chanmusic.core.errors import InputError
    from chanmusic.runner.plan import plan_runs

    spec_json = read_json(Path(out) / "spec.json")
    if not spec_json:
        raise InputError(f"--status {out}", "no spec.json: no comparison was started in this folder",
                         "pass the --out folder of a `chanmusic compare` run")
    plans = plan_runs(Spec.from_json(spec_json), Path(out))
    lines, counts = [], {}
    for plan in plans:
        st = read_status(plan.dir) or {}
        state = st.get("status", "not started")
        counts[state] = counts.get(state, 0) + 1
        if state == "done":
            m = st.get("metrics") or {}
            first = next(iter(m.items()), None)
            detail = f"{first[0]} {first[1]['mean']:.3f}" if first and isinstance(first[1], dict) and \
                "mean" in first[1] else ""
        elif state == "failed":
            detail = f"at {st.get('failed_step')}: {st.get('error')}"
        elif state == "running":
            steps = st.get("steps") or {}
            detail = "after " + ", ".join(k for k, v in steps.items() if (v or {}).get("status") == "done") \
                if steps else "started " + str(st.get("started", ""))
        else:
            detail = ""
        job = (jobs or {}).get(plan.label)
        lines.append(f"{plan.label:<40} {state:<12} {detail}".rstrip() + (f"  [{job}]" if job else ""))
    lines.append(f"{len(plans)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return lines
