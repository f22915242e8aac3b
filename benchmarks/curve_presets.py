"""Named grids of ``benchmarks/learning_curve.py`` runs: one command for a question (issue 28, #27 item 11).

    python benchmarks/learning_curve.py --preset issue28 OUT [--gens demo,dipole,tracking] [--snrs -9,-16]
        [--rows channel_oriented,block_tokens,linear_reference] [--steps 800] [--every 200] [--score test]
        [--no-pretrain] [--dry-run]
    python benchmarks/learning_curve.py --preset recipe OUT [...]      # the channel-oriented recipe on validation

Data: each generator's set is written once under ``OUT/data/<gen><snr>/nmed-t`` (4 subjects × 10 songs × 90 s;
``demo``: ``datamodules.synthetic`` with ``response_gain`` = 10^((snr + 16) / 20), its default measuring about
−16 dB per phase-locked electrode; ``dipole``: ``datamodules.synthetic_dipole``; ``tracking``:
``datamodules.synthetic_tracking``, blind to the model's recipe). Every run: ``--data.test_fraction 0.2
--data.val_fraction 0.2``, music and its no-music control trained to the same fixed steps and scored at the same
checkpoints; results under ``OUT/<gen><snr>/<row>/curve.jsonl`` (+ per-window ``items/``, for the paired
recording-level intervals of ``benchmarks/plot_curve.py``). A finished run (``done`` beside it) is skipped. One process, one thread per run (``--threads``).

``issue28``: the paper's row (pretrained, ``experiments/pretrain/channel_oriented.yaml``, one epoch as the demo
profile), block tokens (its own pretraining) and the linear reference. ``recipe``: the channel-oriented row's
alignment-only options — the channel gain and the linear skip, on / off — scored on **validation** windows
(``--score val,test`` keeps the test score beside it, never used to choose).
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

GENS = {"demo": None, "dipole": "data/synthetic_dipole.yaml", "tracking": "data/synthetic_tracking.yaml"}
ENC = "--model.init_args.encoder.init_args."
ROWS = {  # row: (alignment configs, pretraining configs, extra arguments)
    "channel_oriented": (["align/default.yaml", "encoders/channel_oriented.yaml"], ["pretrain/channel_oriented.yaml"],
                         []),
    "block_tokens": (["align/default.yaml", "encoders/channel_oriented.yaml", "ablations/block_tokens.yaml"],
                     ["pretrain/channel_oriented.yaml", "ablations/block_tokens.yaml"], []),
    "linear_reference": (["align/default.yaml", "encoders/linear_reference.yaml"], [], []),
}
RECIPES = {f"co_gain{int(g)}_skip{int(s)}": (ROWS["channel_oriented"][0], ROWS["channel_oriented"][1],
                                             [f"{ENC}channel_gain", str(g).lower(), f"{ENC}linear_skip", str(s).lower()])
           for g, s in itertools.product((True, False), (False, True))}
PRESETS = {"issue28": ROWS, "recipe": RECIPES}
PRETRAIN_ARGS = "--trainer.max_epochs 1 --trainer.limit_val_batches 2"  # the demo profile's pretraining
SPLIT = ["--data.test_fraction", "0.2", "--data.val_fraction", "0.2"]


def write_data(gen: str, snr: float, root: Path) -> None:
    """Write generator ``gen``'s set at ``snr`` dB into ``root`` (NMED-T layout) unless it is there."""
    if (root / "stimuli").is_dir():
        return
    if gen == "demo":
        from datamodules.synthetic.writer import write_demo

        write_demo(root, seed=0, n_subjects=4, duration_s=90.0, response_gain=10 ** ((snr + 16.0) / 20.0))
    elif gen == "dipole":
        from datamodules.synthetic_dipole.__main__ import main as dipole

        dipole([str(root), "--snr-db", str(snr), "--subjects", "4", "--duration", "90"])
    else:
        from datamodules.synthetic_tracking.__main__ import main as tracking

        tracking([str(root), "--snr-db", str(snr), "--subjects", "4", "--duration", "90"])


def jobs(a: argparse.Namespace) -> list[tuple[str, float, list[str]]]:
    """``(generator, SNR, learning_curve argv)`` per run of the grid, in order (generator, SNR, row)."""
    grid = PRESETS[a.preset]
    rows = a.rows.split(",") if a.rows else list(grid)
    out = []
    for gen, snr, row in itertools.product(a.gens.split(","), [float(x) for x in a.snrs.split(",")], rows):
        if gen not in GENS or row not in grid:
            raise SystemExit(f"learning_curve: --gens {gen!r} / --rows {row!r}: one of {list(GENS)} / {list(grid)}")
        tag = f"{gen}{snr:+g}"
        data = Path(a.out) / "data" / tag
        configs, pre, extra = grid[row]
        argv = [str(Path(a.out) / tag / row), row, "--data", str(data / "nmed-t"), "--cache", str(data / "cache"),
                "--every", str(a.every), "--steps", str(a.steps), "--threads", str(a.threads), "--score", a.score]
        if pre and not a.no_pretrain:
            argv += ["--pretrain", ",".join(pre + ([GENS[gen]] if GENS[gen] else [])),
                     "--pretrain-args", " ".join([PRETRAIN_ARGS, *SPLIT])]
        out.append((gen, snr, argv + ["--", *configs, *([GENS[gen]] if GENS[gen] else []), "--", *SPLIT, *extra]))
    return out


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="learning_curve.py --preset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", choices=sorted(PRESETS))
    p.add_argument("out")
    p.add_argument("--gens", default=",".join(GENS))
    p.add_argument("--snrs", default="-9,-16")
    p.add_argument("--rows", default=None, help="comma-separated rows of the preset (default: all)")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--every", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--score", default=None, help="default: test (issue28), val,test (recipe)")
    p.add_argument("--no-pretrain", action="store_true", help="align from random weights (saves the pretraining)")
    p.add_argument("--dry-run", action="store_true", help="print the runs, run nothing")
    a = p.parse_args(argv)
    a.score = a.score or ("val,test" if a.preset == "recipe" else "test")
    from benchmarks.learning_curve import main as curve

    for gen, snr, run in jobs(a):
        done = Path(run[0]) / "done"
        print(f"[preset] {gen}{snr:+g} {run[1]}: {'done, skipped' if done.exists() else 'running'}", flush=True)
        if a.dry_run or done.exists():
            continue
        write_data(gen, snr, Path(run[3]))
        curve(run)
        done.write_text("")


if __name__ == "__main__":
    main(sys.argv[1:])
