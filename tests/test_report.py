"""``chanmusic report``: a fake comparison folder (hand-written status/metrics, tiny wavs and manifests) ->
results.md/csv, plots, a self-contained ``report/index.html`` whose every image and audio loads in headless
Chromium (skipped, with the reason printed, where no browser binary exists)."""
from __future__ import annotations

import csv
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from chanmusic import report
from chanmusic.evaluation.interpret import rdm_correlation, song_dissimilarity
from chanmusic.report.interpretation import draw_interpretation
from chanmusic.results.layout import run_folder as run_dir
from chanmusic.runner import load_spec, save_spec, write_status
from tooling.browser import check_in_browser, find_browser


def _wav(path: Path, freq: float, subtype: str = "PCM_16", seconds: float = 0.5, sr: int = 16000) -> Path:
    import soundfile as sf

    t = np.arange(int(sr * seconds)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, subtype=subtype)
    return path


def _metrics(base: float) -> dict:
    return {"id50": {"mean": base, "std": 0.01, "n": 120, "chance": 0.02},
            "song14": {"mean": base + 0.2, "std": 0.02, "n": 120, "chance": 0.1},
            "clap_score": {"mean": base + 0.3, "std": 0.05, "n": 120, "chance": None}}


@pytest.fixture()
def fake_out(tmp_path):
    """A comparison folder: ours (done, audio as JSON manifest), linear (done, CSV manifest, float wavs),
    a failed row, a row never run, and an ablation without audio."""
    spec = {
        "title": "Fake comparison", "config_root": str(tmp_path), "metrics": ["clap_score", "id50", "song14"],
        "reference_row": "ours", "paper_source": "test",
        "rows": [{"name": "ours", "label": "Channel-oriented (ours)", "configs": ["x.yaml"],
                  "paper": {"clap_score": 0.683, "id50": 0.487, "song14": 0.692}},
                 {"name": "linear", "label": "Linear reference", "configs": ["x.yaml"]},
                 {"name": "broken", "label": "Broken encoder", "configs": ["x.yaml"]},
                 {"name": "later", "label": "Not run yet", "configs": ["x.yaml"]}],
        "ablations": [{"name": "no_pretrain", "label": "- pretraining", "configs": ["x.yaml"]}],
        "profiles": {"quick": {"seeds": 1, "base": [], "description": "fake profile", "demo_data": {"root": "x"}}},
    }
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    out.mkdir()
    save_spec(load_spec(tmp_path / "paper.yaml", "quick", out=out), out)
    for row, base in (("ours", 0.30), ("linear", 0.10), ("no_pretrain", 0.05)):
        for control in (False, True):
            d = run_dir(out, row, 0, control)
            (d / "align").mkdir(parents=True)
            (d / "align" / "metrics.json").write_text(json.dumps(_metrics(0.02 if control else base)))
            write_status(d, {"status": "done"})
    d = run_dir(out, "broken", 0, False)
    write_status(d, {"status": "failed", "failed_step": "align", "error": "RuntimeError: CUDA out of memory"})
    write_status(run_dir(out, "broken", 0, True), {"status": "failed", "error": "RuntimeError: again"})
    # audio: JSON manifest (16-bit wavs, relative paths) for ours, CSV only (float wavs, absolute paths) for linear
    pred = run_dir(out, "ours", 0, False) / "reconstruct" / "predictions"
    items = []
    for i in range(5):
        _wav(pred / f"true_{i}.wav", 220 * (i + 1))
        _wav(pred / f"gen_{i}.wav", 230 * (i + 1))
        items.append({"segment": 100 + i, "song": 3, "song_name": "Song – Artist", "true": f"true_{i}.wav",
                      "generated": f"gen_{i}.wav", "clap_score": 0.1 * i})
    # the layout callbacks.audio_writer.AudioPredictionWriter writes (run facts under "info")
    (pred / "manifest.json").write_text(json.dumps({"info": {"audioldm_is_random": True, "clap_is_random": True},
                                                    "paths_relative_to": "this folder", "items": items}))
    pred = run_dir(out, "linear", 0, False) / "reconstruct" / "predictions"
    with (pred.parent.mkdir(parents=True) or pred.mkdir() or (pred / "manifest.csv").open("w", newline="")) as f:
        w = csv.writer(f)
        w.writerow(["segment", "true", "generated", "clap_score"])
        w.writerow([7, _wav(pred / "t.wav", 330, "FLOAT"), _wav(pred / "g.wav", 440, "FLOAT"), 0.25])
    # the tiny random CLAP flag in the cache manifest
    (out / "cache" / "nmed-t-abc").mkdir(parents=True)
    (out / "cache" / "nmed-t-abc" / "manifest.json").write_text(json.dumps({"clap_is_random": True}))
    # interpretation: the data chanmusic.evaluation.interpret saves, the figures drawn by the report
    inter = out / "interpretation"
    inter.mkdir()
    from datamodules.nmed import NMED_CH_NAMES

    att = np.random.default_rng(0).random(len(NMED_CH_NAMES))
    np.save(inter / "ours_attention.npy", att / att.sum())
    emb = np.random.default_rng(1).normal(size=(40, 8))
    song = np.repeat(np.arange(4), 10)
    names, rdm = song_dissimilarity(emb, song)
    np.savez(inter / "ours_dissimilarity.npz", eeg_rdm=rdm, audio_rdm=rdm)
    (inter / "ours.json").write_text(json.dumps({"row": "ours", "label": "ours", "attention": "ours_attention.png",
                                                 "attention_windows": 40, "attention_kind": "CLS attention",
                                                 "ch_names": list(NMED_CH_NAMES), "top_channels": [["E1", 0.1]],
                                                 "dissimilarity": "ours_dissimilarity.png",
                                                 "songs": [str(s) for s in names],
                                                 "n_windows": 40, "rdm_spearman": 1.0}))
    (inter / "linear.json").write_text(json.dumps({"row": "linear", "error": "FileNotFoundError: no checkpoint"}))
    drawn = draw_interpretation(out)
    assert sorted(p.name for p in drawn) == ["ours_attention.png", "ours_dissimilarity.png"]
    assert draw_interpretation(out) == []  # up to date: not redrawn
    return out


def test_song_dissimilarity_on_known_embeddings():
    emb = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.0, 2.0], [-1.0, 0.0]])
    names, rdm = song_dissimilarity(emb, np.array([3, 3, 5, 5, 9]))
    assert list(names) == [3, 5, 9]
    assert np.allclose(np.diag(rdm), 0) and rdm[0, 2] == pytest.approx(2.0, abs=0.01)
    assert rdm[1, 2] == pytest.approx(1.0) and np.allclose(rdm, rdm.T)
    assert rdm_correlation(rdm, rdm) == pytest.approx(1.0)


def test_report_tables_keep_failed_rows_and_flag_random_models(fake_out):
    index = report.build_report(fake_out, audio_per_row=3)
    md = (fake_out / "results.md").read_text()
    assert "Broken encoder" in md and "failed: seed0 align: RuntimeError: CUDA out of memory" in md
    assert "Not run yet" in md and "not run" in md
    assert "tiny RANDOMLY INITIALISED" in md and "one seed" in md and "gain over control" in md
    ours = next(l for l in md.splitlines() if l.startswith("| Channel-oriented (ours) | ours"))
    assert "0.300 ± 0.010" in ours
    paper = [l for l in md.splitlines() if "| paper |" in l][0]
    assert "0.683" in paper and "0.487" in paper
    rows = list(csv.DictReader((fake_out / "results.csv").open()))
    r = next(x for x in rows if x["row"] == "ours" and x["metric"] == "id50")
    assert float(r["gain"]) == pytest.approx(0.28) and float(r["paper"]) == 0.487 and r["ci_kind"].startswith("within")
    assert any(x["row"] == "broken" and x["status"] == "failed" for x in rows)
    page = index.read_text()
    assert "Tiny random models" in page and "AudioLDM" in page
    assert "no audio written for this row" in page                     # the ablation has none
    assert page.count("<audio") == 2 * 3 + 2                            # 3 pairs for ours, 1 for linear
    assert "CLAP score 0.250" in page
    assert "interpretation failed: FileNotFoundError" in page
    # self-contained: every src is relative and inside the report folder
    srcs = re.findall(r"src='([^']+)'", page)
    assert srcs and all(not s.startswith(("/", "http", "file:")) for s in srcs)
    for s in srcs:
        assert (index.parent / s).is_file(), s
    assert all(Path(index.parent / s).resolve().is_relative_to(index.parent.resolve()) for s in srcs)


def test_report_command_line(fake_out, capsys):
    from chanmusic.cli import main

    spec = json.loads((fake_out / "spec.json").read_text())
    spec["rows"][1]["label"] = "Linear <ref> & 'co'"                 # the templates escape every value
    (fake_out / "spec.json").write_text(json.dumps(spec))
    main(["report", str(fake_out)])
    page = (fake_out / "report" / "index.html").read_text()
    assert "index.html" in capsys.readouterr().out
    assert "<ref>" not in page and "Linear &lt;ref&gt; &amp; &#39;co&#39;" in page


def test_report_loads_in_headless_chromium(fake_out, tmp_path):
    browser = find_browser()
    if browser is None:
        msg = "no Chromium binary (run .ci/setup-browser.sh): browser check skipped"
        print(msg, file=sys.stderr)
        pytest.skip(msg)
    index = report.build_report(fake_out, audio_per_row=3)
    # moved elsewhere, the folder still works (relative links, copied assets)
    moved = tmp_path / "moved_report"
    shutil.copytree(index.parent, moved)
    res = check_in_browser(moved / "index.html", browser, screenshot=moved / "screenshot.png")
    kinds = [e["tag"] for e in res["elements"]]
    assert kinds.count("audio") == 8 and kinds.count("img") >= 8, res["elements"]
    assert res["broken"] == [], res["broken"]
    assert res["screenshot"] is not None and res["screenshot"].stat().st_size > 10_000
    # the check itself catches broken links
    (moved / "assets" / "audio" / "ours" / "00_true.wav").unlink()
    (moved / "assets" / "plots" / "metric_id50.png").unlink()
    broken = check_in_browser(moved / "index.html", browser)["broken"]
    assert {Path(e["src"]).name for e in broken} == {"00_true.wav", "metric_id50.png"}


def test_attention_callback_logs_a_scalp_map(tmp_path):
    """callbacks.attention.ChannelAttentionMaps: mean CLS→channel attention of validation batches -> add_figure."""
    from types import SimpleNamespace

    import torch

    from callbacks.attention import ChannelAttentionMaps
    from datamodules.nmed import NMED_CH_NAMES

    C = len(NMED_CH_NAMES)

    class Enc(torch.nn.Module):
        def forward(self, eeg, mask=None):
            att = eeg.abs().mean(-1)
            return SimpleNamespace(channel_attention=att / att.sum(1, keepdim=True))

    figs = []
    exp = SimpleNamespace(add_figure=lambda tag, fig, global_step: figs.append((tag, global_step)))
    trainer = SimpleNamespace(sanity_checking=False, current_epoch=0, is_global_zero=True, global_step=7,
                              logger=SimpleNamespace(experiment=exp), datamodule=SimpleNamespace(ch_names=NMED_CH_NAMES),
                              log_dir=str(tmp_path), default_root_dir=str(tmp_path))
    module = SimpleNamespace(encoder=Enc())
    cb = ChannelAttentionMaps(max_batches=2)
    cb.on_validation_epoch_start(trainer, module)
    for i in range(3):
        cb.on_validation_batch_end(trainer, module, None, {"eeg": torch.randn(4, C, 10), "channel_mask": None}, i)
    assert cb._count == 8                                    # max_batches respected
    cb.on_validation_epoch_end(trainer, module)
    assert figs == [("channel_attention", 7)]


def test_flat_generated_audio_metrics_are_flagged():
    def row(name, v):
        return report.RowResult(name, name, "main", "done", cells={"clap_score": report.Cell("clap_score", mean=v)})

    assert report.flat_metrics([row("a", 0.97705), row("b", 0.97706), row("oracle", 0.97705)]) == ["clap_score"]
    assert report.flat_metrics([row("a", 0.60), row("b", 0.65), row("oracle", 0.90)]) == []
    assert report.flat_metrics([row("a", 0.5), row("b", 0.5)]) == []        # two rows prove nothing


def test_a_gain_is_bold_only_where_its_interval_lies_above_zero():
    """Every gain cell used to be bold, so +0.047 [-0.013, 0.108] looked like a finding; bold now means the 95%
    interval is above 0 (the cells as the table writes them, signs as the report prints them)."""
    from chanmusic.report.tables import gain_cell

    assert gain_cell("+0.047 [0.025, 0.070]") == "**+0.047 [0.025, 0.070]**"
    for cell in ("+0.047 [-0.013, 0.108]", "+0.014 [-0.000, 0.030]", "+0.100 [0.000, 0.200]",
                 "-0.013 [-0.074, 0.047]", "+0.020 [−0.010, 0.050]", "—", "", "+0.050"):
        assert gain_cell(cell) == cell
