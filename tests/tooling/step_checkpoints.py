"""A config that checkpoints every N optimiser steps (``last.ckpt`` each time), for tests that kill or fill a fit
mid-epoch and resume it."""
from __future__ import annotations

from pathlib import Path


def step_checkpoint_yaml(path: Path, every: int) -> Path:
    """Write the config to ``path`` (a Lightning ``ModelCheckpoint`` with no monitor) and return ``path``."""
    path.write_text("trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
                    "      init_args:\n        monitor: null\n        save_last: true\n"
                    f"        every_n_train_steps: {int(every)}\n")
    return path
