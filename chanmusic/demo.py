"""``make demo``: demo data -> prepare -> train and test each demo model (and its no-music control) -> table.

Everything here goes through the same public paths a user runs (``write_demo``, ``chanmusic prepare``,
``chanmusic fit/test`` with the YAMLs in ``experiments/``); this file only strings them together.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"

# (row name, pretrain configs or None, align config files after demo.yaml, extra args).
# Transformers get fewer epochs than the linear reference so the whole demo stays in minutes on 2 CPU cores;
# pretraining runs one epoch: on a CPU it shows the stage working, not paying off (calibration.md).
TRANSFORMER_ARGS = ["--trainer.max_epochs", "4"]
DEMO_MODELS: list[tuple[str, list[str] | None, list[str], list[str]]] = [
    ("linear reference", None, ["align/default.yaml", "encoders/linear_reference.yaml"], []),
    ("channel-oriented (pretrained)", ["pretrain/channel_oriented.yaml"],
     ["align/default.yaml", "encoders/channel_oriented.yaml"], TRANSFORMER_ARGS),
    ("block tokens (ablation, no pretraining)", None,
     ["align/default.yaml", "encoders/channel_oriented.yaml", "ablations/block_tokens.yaml"], TRANSFORMER_ARGS),
]
PRETRAIN_ARGS = ["--trainer.max_epochs", "1", "--trainer.logger.init_args.name", "pretrain"]
# Reconstruction (ridge -> AudioLDM) runs after alignment for this row, and for the audio-oracle reference.
RECONSTRUCT_ROW = "channel-oriented (pretrained)"
RECONSTRUCT_ARGS = ["--model.init_args.max_generate", "24", "--trainer.logger.init_args.name", "reconstruct"]
AUDIO_METRICS = ("clap_score", "ssim", "psnr")
METRIC_ORDER = ("id50", "song_id", "genre_id", "within_song", "clap_score", "ssim", "psnr")


OUT = Path("demo_out")  # experiments/demo.yaml's folder; --out moves data, cache and runs together


def _out_args() -> list[str]:
    return ["--data.root", str(OUT / "data" / "nmed-t"), "--data.cache_dir", str(OUT / "cache"),
            "--trainer.default_root_dir", str(OUT / "runs"), "--trainer.logger.init_args.save_dir", str(OUT / "runs")]


def _cli(configs: list[str], extra: list[str]):
    from chanmusic.cli import lightning_main

    args = ["--config", str(EXPERIMENTS / "demo.yaml")]
    for c in configs:
        args += ["--config", str(EXPERIMENTS / c)]
    return lightning_main(args + _out_args() + extra, run=False)


def run_pretrain(configs: list[str], extra: list[str] = ()) -> str:
    """fit the pretraining stage in this process; returns its last checkpoint's path."""
    cli = _cli(configs, PRETRAIN_ARGS + list(extra))
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return str(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt")


def run_stage(configs: list[str], extra: list[str], control: bool) -> dict:
    """fit then test (best checkpoint) in this process; returns metrics.json's content."""
    cli = _cli(configs, list(extra) + (["--data.control", "shift"] if control else []))
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")
    path = Path(cli.trainer.log_dir) / "metrics.json"
    best = cli.trainer.checkpoint_callback.best_model_path if cli.trainer.checkpoint_callback else ""
    return json.loads(path.read_text()) | {"_dir": str(path.parent), "_best": best}


def run_reconstruction(align_ckpt: str | None, control: bool = False) -> dict:
    """Ridge adapter + AudioLDM on the test split (``test``), then wavs + manifest (``predict``).

    ``align_ckpt=None`` runs the audio-oracle reference (ground-truth CLAP embeddings through AudioLDM)."""
    configs = ["reconstruct/default.yaml"] + ([] if align_ckpt else ["reconstruct/audio_oracle.yaml"])
    extra = RECONSTRUCT_ARGS + (["--model.init_args.align_checkpoint", align_ckpt] if align_ckpt else [])
    extra += ["--data.control", "shift"] if control else []
    cli = _cli(configs, extra)
    cli.trainer.test(cli.model, datamodule=cli.datamodule)
    cli.trainer.predict(cli.model, datamodule=cli.datamodule, return_predictions=False)
    path = Path(cli.trainer.log_dir) / "metrics.json"
    print(f"[demo] reconstructed audio: {Path(cli.trainer.log_dir) / 'predictions'}")
    return json.loads(path.read_text()) | {"_dir": str(path.parent)}


def fmt(m: dict | None) -> str:
    """``mean [95% CI]``: the run's bootstrap interval over test windows (older files: ± the draw spread)."""
    if m is None:
        return "—"
    ci = m.get("ci95")
    if ci and None not in ci:
        return f"{m['mean']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{m['mean']:.3f}±{m.get('std') or 0:.3f}"


def results_table(rows: list[tuple[str, dict, dict | None]]) -> str:
    """Markdown table: per model its metrics, its no-music control and the gain over the control."""
    head = "| model | run | " + " | ".join(METRIC_ORDER) + " |"
    lines = [head, "|---|---|" + "---|" * len(METRIC_ORDER)]
    def chance_of(k: str) -> str:
        for _, res, _ in rows:
            if res.get(k) and res[k].get("chance") is not None:
                return f"{res[k]['chance']:.3f}"
        return "—"

    lines.append("| chance | | " + " | ".join(chance_of(k) for k in METRIC_ORDER) + " |")
    for name, res, ctrl in rows:
        lines.append(f"| {name} | music | " + " | ".join(fmt(res.get(k)) for k in METRIC_ORDER) + " |")
        if ctrl is not None:
            lines.append(f"| {name} | no-music control | " + " | ".join(fmt(ctrl.get(k)) for k in METRIC_ORDER) + " |")
            gains = [f"{res[k]['mean'] - ctrl[k]['mean']:+.3f}" if res.get(k) and ctrl.get(k) else "—" for k in METRIC_ORDER]
            lines.append(f"| {name} | **gain over control** | " + " | ".join(gains) + " |")
    return "\n".join(lines)


NOTES = (
    "mean [95% bootstrap interval over test windows, seeded]; one training seed, so seed-to-seed variability is NOT\n"
    "included. song_id / genre_id: every song / genre of the data (10 / 9 on NMED-T). within_song: distractors from\n"
    "the same song only. no-music control: the same EEG with each recording's audio targets circularly shifted by\n"
    "its own amount (recording fingerprints kept, music pairing broken): only the gain over it is evidence of music.\n"
    "clap_score / ssim / psnr: generated vs true audio after ridge -> AudioLDM (chance for clap_score = mismatched\n"
    "pairs); the audio oracle feeds the true CLAP embedding to the same generator."
)


def recipe_note() -> str:
    """What the channel-oriented row runs, read from its YAMLs (so the table's note cannot drift from them)."""
    import yaml

    a = yaml.safe_load((EXPERIMENTS / "encoders/channel_oriented.yaml").read_text())["model"]["init_args"]
    p = yaml.safe_load((EXPERIMENTS / "pretrain/channel_oriented.yaml").read_text())["model"]["init_args"]
    return (f"channel-oriented row: readout = head '{a['head']}' on {a.get('readout') or 'its default source'} "
            f"(present tokens only); encoder = the pretraining's {a.get('init_encoder_weights', 'teacher')}; "
            f"pretraining crops {'resized' if p.get('crop_resize') else 'native-rate (not resampled)'}, student "
            f"channel dropout {p['student_channel_drop']} as {p['channel_drop_mode']}; alignment channel dropout "
            f"{a['channel_dropout']} as {a['channel_dropout_mode']} (docs/model.md).")


def clap_is_random(out: Path) -> bool:
    mans = [json.loads(p.read_text()) for p in (out / "cache").glob("*/manifest.json")]
    return any(m.get("clap_is_random", True) for m in mans) or not mans


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_out", help="demo output folder (data, cache, runs)")
    parser.add_argument("--no-control", action="store_true", help="skip the no-music control runs")
    parser.add_argument("--fast", action="store_true",
                        help="only the linear reference and its control (the end-to-end slice, a few minutes)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    from datamodules.synthetic import write_demo

    t0 = time.time()
    global OUT
    out = OUT = Path(args.out)
    data = out / "data" / "nmed-t"
    if not (data / "song21_Imputed.mat").exists():
        print(f"[demo] writing synthetic NMED-T-format demo data to {data}")
        write_demo(data, seed=0)
    from chanmusic.cli import prepare_main

    prepare_main(["--config", str(EXPERIMENTS / "demo.yaml")] + _out_args()[:4])
    rows = []
    for name, pretrain, configs, extra in DEMO_MODELS[:1] if args.fast else DEMO_MODELS:
        print(f"\n[demo] === {name} ===")
        if pretrain:
            print(f"[demo] pretraining ({', '.join(pretrain)})")
            ckpt = run_pretrain(pretrain)
            extra = extra + ["--model.init_args.init_encoder_from", ckpt]
        res = run_stage(configs, extra, control=False)
        print(f"[demo] {name}: no-music control")
        ctrl = None if args.no_control else run_stage(configs, extra, control=True)
        if name == RECONSTRUCT_ROW:
            print(f"[demo] {name}: reconstruction (ridge -> AudioLDM)")
            res |= {k: v for k, v in run_reconstruction(res["_best"]).items() if k in AUDIO_METRICS}
            if ctrl is not None:
                ctrl |= {k: v for k, v in run_reconstruction(ctrl["_best"], control=True).items() if k in AUDIO_METRICS}
        rows.append((name, res, ctrl))
    if not args.fast:
        print("\n[demo] === audio oracle (ground-truth CLAP through AudioLDM: the upper bound) ===")
        rows.append(("audio oracle", run_reconstruction(None), None))
    table = results_table(rows)
    note = NOTES + "\n" + recipe_note()
    if clap_is_random(out):
        note += ("\nNOTE: the CLAP used is a tiny RANDOMLY INITIALISED model (no pretrained weights offline): the\n"
                 "numbers show the pipeline learning above chance on synthetic data, not real CLAP-space results.")
    print("\n" + table + "\n\n" + note)
    (out / "results.md").write_text(table + "\n\n" + note + "\n")
    print(f"[demo] done in {time.time() - t0:.0f} s; table in {out / 'results.md'}; runs in {out / 'runs'}")


if __name__ == "__main__":
    main()
