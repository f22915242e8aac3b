"""The fake worker (``tests/tooling/fake_runner.py``) with a kill switch: call number ``FAULT_KILL_AT`` (counted in
``FAULT_COUNTER``) SIGKILLs the runner (``FAULT_RUNNER_PID``); an odd call number dies before doing its step's
work, an even one after writing its files (before the runner records them). Call number ``FAULT_KILL_WORKER_AT``
SIGKILLs this worker alone (the step's process; the runner goes on), half-way through: its checkpoint written, no
``result.json``."""
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tooling.fake_runner import FAKE_WORKER  # noqa: E402

counter = Path(os.environ["FAULT_COUNTER"])
with open(counter, "a") as fh:
    fh.write("x")
n, at = counter.stat().st_size, int(os.environ.get("FAULT_KILL_AT", "0"))
if n == int(os.environ.get("FAULT_KILL_WORKER_AT", "0")):
    job = __import__("json").loads(Path(sys.argv[1]).read_text())
    (Path(job["dir"]) / "checkpoints").mkdir(parents=True, exist_ok=True)
    (Path(job["dir"]) / "checkpoints" / "last.ckpt").write_text("ok")
    print("epoch 3/10 ...", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def die() -> None:
    os.kill(int(os.environ["FAULT_RUNNER_PID"]), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


if n == at and n % 2:
    die()
code = compile(FAKE_WORKER, "fake_worker", "exec")
try:
    exec(code, {"__name__": "__main__"})
except SystemExit as e:
    if n == at:
        die()
    raise
if n == at:
    die()
