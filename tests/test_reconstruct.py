"""Reconstruction stage: ridge adapter, AudioLDM generation invariants, metric plumbing, predictions, end to end.

Why no "oracle beats shuffled embeddings" test on the real tiny models: with randomly initialised AudioLDM and CLAP
nothing ties the generated audio to the conditioning's meaning (measured: CLAP score 0.9467 for the true vs 0.9467
for mismatched embeddings, at 2 and 10 steps, guidance 1 / 2.5 / 10). What can hold, and is tested, is:
(1) generation is a deterministic function of (conditioning, window seed) that differs across conditionings and
does not depend on batching; (2) a CLAP score of true audio with itself is 1 (tests/test_audio_metrics.py);
(3) with a generator that *does* carry the conditioning (retrieval of the true clip nearest to the conditioning
embedding), the whole test pipeline scores the oracle at CLAP score 1 / SSIM 1 and shuffled conditioning lower, so
items, embeddings and mels are paired correctly end to end.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from chanmusic.cli import lightning_main
from chanmusic.stages.generation import segment_seed
from chanmusic.stages.reconstruct import ReconstructModule
from chanmusic.core.ridge import RidgeAdapter

ROOT = Path(__file__).resolve().parent.parent
E = ROOT / "experiments"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---------------------------------------------------------------------------------------------------------------
# Ridge adapter
# ---------------------------------------------------------------------------------------------------------------

def _linear_data(n, d_in, d_out, noise, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    W = torch.randn(d_in, d_out, generator=g, dtype=torch.float64)
    b = torch.randn(d_out, generator=g, dtype=torch.float64)
    Y = X @ W + b + noise * torch.randn(n, d_out, generator=g, dtype=torch.float64)
    return X, Y, W, b


def test_ridge_recovers_a_known_linear_map():
    X, Y, W, b = _linear_data(400, 16, 6, noise=1e-3)
    r = RidgeAdapter.fit(X, Y)
    assert r.alpha <= 1e-2  # clean data: the smallest alphas of the grid
    assert torch.allclose(r.weight.double(), W, atol=2e-3) and torch.allclose(r.bias.double(), b, atol=2e-3)
    assert torch.allclose(r.predict(X.float()).double(), X @ W + b, atol=1e-2)


def test_ridge_alpha_grows_with_noise():
    clean = RidgeAdapter.fit(*_linear_data(60, 16, 6, noise=1e-3)[:2])
    noisy = RidgeAdapter.fit(*_linear_data(60, 16, 6, noise=10.0)[:2])
    assert noisy.alpha >= 100 * clean.alpha, (clean.alpha, noisy.alpha)


def test_ridge_loo_is_exact_leave_one_out():
    X, Y, _, _ = _linear_data(15, 4, 3, noise=0.5, seed=3)
    alphas = [0.1, 1.0, 10.0]
    r = RidgeAdapter.fit(X, Y, alphas)
    for a, loo in zip(alphas, r.loo_mse):
        err = 0.0
        for i in range(len(X)):
            keep = torch.arange(len(X)) != i
            m = RidgeAdapter.fit(X[keep], Y[keep], [a])
            err += float(((m.predict(X[i:i + 1].float()).double() - Y[i]) ** 2).sum())
        assert loo == pytest.approx(err / Y.numel(), rel=1e-4)


def test_ridge_matches_sklearn_ridgecv():
    from sklearn.linear_model import RidgeCV

    X, Y, _, _ = _linear_data(120, 10, 4, noise=2.0, seed=1)
    alphas = np.logspace(-2, 4, 13)
    ours = RidgeAdapter.fit(X, Y, alphas)
    ref = RidgeCV(alphas=alphas, fit_intercept=True).fit(X.numpy(), Y.numpy())
    assert ours.alpha == pytest.approx(ref.alpha_)
    assert np.allclose(ours.weight.numpy(), ref.coef_.T, atol=1e-5)
    assert np.allclose(ours.bias.numpy(), ref.intercept_, atol=1e-5)


def test_ridge_save_load_roundtrip(tmp_path):
    X, Y, _, _ = _linear_data(50, 8, 5, noise=0.1)
    r = RidgeAdapter.fit(X, Y, normalize_input=True)
    path = r.save(tmp_path / "ridge.safetensors")
    back = RidgeAdapter.load(path)
    assert back.summary() == r.summary()
    assert torch.equal(back.predict(X.float()), r.predict(X.float()))
    bad = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2, 2)}, str(bad))
    with pytest.raises(ValueError, match="not a chanmusic ridge"):
        RidgeAdapter.load(bad)


# ---------------------------------------------------------------------------------------------------------------
# Generation invariants on the tiny random AudioLDM
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def oracle_module():
    from chanmusic.audio import AudioLDMGenerator
    from encoders.linear_reference import LinearReference

    m = ReconstructModule(LinearReference(4, 125.0, 250), oracle=True, num_inference_steps=2, generation_seed=3,
                          generation_batch_size=2)
    m.generator = AudioLDMGenerator.load("tiny-random", seed=0)
    return m


def test_generation_is_deterministic_per_window_and_follows_the_conditioning(oracle_module):
    m = oracle_module
    c = F.normalize(torch.randn(3, 512, generator=torch.Generator().manual_seed(0)), dim=-1)
    a = m.generate(c, [10, 11, 12], 1.0)
    assert a.shape == (3, 16000) and np.isfinite(a).all()
    assert np.array_equal(a, m.generate(c, [10, 11, 12], 1.0))  # deterministic
    # a window's audio does not depend on its batch (size, position, neighbours)
    assert np.array_equal(a[2], m.generate(c[2:], [12], 1.0)[0])
    assert np.array_equal(a[1], m.generate(c[[0, 1]].flip(0), [11, 10], 1.0)[0])
    # same as AudioLDMGenerator.generate with the window's seed
    ref = m.generator.generate(c[1:2], audio_length_s=1.0, num_inference_steps=2, guidance_scale=2.5,
                               seed=segment_seed(3, 11))
    assert np.allclose(a[1], ref[0], atol=1e-6)
    # another conditioning, same noise: different audio
    other = m.generate(c[[0]], [11], 1.0)[0]
    assert not np.allclose(other, a[1], atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# End to end on a small demo set
# ---------------------------------------------------------------------------------------------------------------

def _common(root, tmp):
    return ["--config", str(E / "demo.yaml"), "--data.root", str(root), "--data.cache_dir", str(tmp / "cache"),
            "--data.test_fraction", "0.3", "--data.batch_size", "32", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp / "runs"), "--trainer.logger.init_args.save_dir", str(tmp / "runs")]


RECON = ["--model.init_args.num_inference_steps", "2", "--model.init_args.max_generate", "8"]


@pytest.fixture(scope="module")
def aligned(demo_root, tmp_path_factory):
    """demo_root (10 songs x 2 subjects x 20 s) aligned with the linear reference for one epoch."""
    tmp = tmp_path_factory.mktemp("recon")
    cli = lightning_main(_common(demo_root, tmp) + ["--config", str(E / "align/default.yaml"),
                                                    "--config", str(E / "encoders/linear_reference.yaml"),
                                                    "--trainer.max_epochs", "1"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    ckpt = cli.trainer.checkpoint_callback.best_model_path
    assert ckpt and Path(ckpt).is_file()
    return demo_root, tmp, ckpt


def _recon_cli(aligned, *extra):
    root, tmp, ckpt = aligned
    return lightning_main(_common(root, tmp) + ["--config", str(E / "reconstruct/default.yaml"),
                                                "--model.init_args.init_from", ckpt, *RECON, *extra], run=False)


def test_reconstruct_end_to_end(aligned):
    cli = _recon_cli(aligned)
    model, trainer, dm = cli.model, cli.trainer, cli.datamodule
    assert "LinearReference from" in model.encoder_note  # rebuilt from the aligned run's config.yaml
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.fit(model, datamodule=dm)  # runners call fit then test: nothing is trained
    assert trainer.global_step == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    trainer.test(model, datamodule=dm)
    run = Path(trainer.log_dir)
    res = json.loads((run / "metrics.json").read_text())
    for name in ("id50", "song_id", "genre_id", "clap_score", "ssim", "psnr", "gen_song_id", "gen_genre_id", "gen_id50",
                 "ridge_id50", "ridge_cosine"):
        assert {"mean", "n", "n_way", "chance", "ci95"} <= set(res[name]), name
        assert np.isfinite(res[name]["mean"]), name
    for name in ("clap_score", "ssim", "psnr", "gen_song_id", "gen_genre_id"):
        assert res[name]["n"] == 8, name  # max_generate
    n_test = len(dm.dataset_for("test"))
    assert res["ridge_id50"]["n"] == res["id50"]["n"] == n_test
    assert -1 <= res["ssim"]["mean"] <= 1 and 0 < res["psnr"]["mean"] <= 100
    info = json.loads((run / "reconstruct.json").read_text())
    assert info["n_generated"] == 8 and info["n_test"] == n_test and info["audioldm_is_random"]
    ridge = RidgeAdapter.load(run / "ridge.safetensors")
    assert ridge.alpha == info["ridge"]["alpha"] and ridge.n_train == len(dm.dataset_for("train"))

    # predict: one wav per generated window + the true clips, and a manifest that matches the files
    import soundfile as sf

    trainer.predict(model, datamodule=dm, return_predictions=False)
    pred = Path(trainer.log_dir) / "predictions"
    rows = list(csv.DictReader(open(pred / "manifest.csv")))
    items = json.loads((pred / "manifest.json").read_text())["items"]
    assert len(rows) == len(items) == 8
    assert [int(r["segment"]) for r in rows] == [i["segment"] for i in items]
    written = {p.relative_to(pred).as_posix() for p in pred.rglob("*.wav")}
    assert written == {r["generated"] for r in rows} | {r["true"] for r in rows}
    for r in rows:
        n = int(round(float(r["length_s"]) * 16000))
        for key in ("generated", "true"):
            audio, sr = sf.read(str(pred / r[key]), dtype="float32")
            assert sr == 16000 and audio.ndim == 1 and len(audio) == n and np.isfinite(audio).all()
        assert -1.0 <= float(r["clap_score"]) <= 1.0
        # the true clip is exactly the audio the cache's mel was computed from
        from chanmusic.audio import log_mel

        true, _ = sf.read(str(pred / r["true"]), dtype="float32")
        cached = torch.from_numpy(np.array(dm.cache.mel[int(r["music"])]))
        assert torch.allclose(log_mel(torch.from_numpy(true)), cached, atol=1e-3)
    # the same windows are generated in test and predict (seeded choice)
    assert sorted(int(r["segment"]) for r in rows) == model._chosen.tolist()
    _check_tensorboard_clips(run, rows, pred, model._chosen[:4].tolist())


def _check_tensorboard_clips(run, rows, pred, first):
    """test wrote the generated and true audio of the first 4 chosen windows to TensorBoard; read back from the
    event file (tensorboard's EventAccumulator), each equals predict's wav of that window to 16-bit precision."""
    import io

    import soundfile as sf
    from tensorboard.backend.event_processing.event_accumulator import AUDIO, EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={AUDIO: 0})
    acc.Reload()
    tags = sorted(acc.Tags()["audio"])
    assert tags == sorted(f"reconstruct/window_{s:06d}/{k}" for s in first for k in ("generated", "true"))
    by_segment = {int(r["segment"]): r for r in rows}
    for tag in tags:
        [event] = acc.Audio(tag)
        assert event.sample_rate == 16000
        logged, sr = sf.read(io.BytesIO(event.encoded_audio_string), dtype="float32")
        r = by_segment[int(tag.split("/")[1].split("_")[1])]
        wav, _ = sf.read(str(pred / r[tag.split("/")[2]]), dtype="float32")
        assert sr == 16000 and logged.shape == wav.shape
        np.testing.assert_allclose(logged, np.clip(wav, -1, 1), atol=2 / 32767)
    assert any(np.abs(sf.read(io.BytesIO(acc.Audio(t)[0].encoded_audio_string))[0]).max() > 1e-3 for t in tags)


def test_oracle_end_to_end(aligned):
    root, tmp, _ = aligned
    cli = lightning_main(_common(root, tmp) + ["--config", str(E / "reconstruct/default.yaml"),
                                               "--config", str(E / "reconstruct/audio_oracle.yaml"), *RECON], run=False)
    cli.trainer.test(cli.model, datamodule=cli.datamodule)
    run = Path(cli.trainer.log_dir)
    res = json.loads((run / "metrics.json").read_text())
    assert {"clap_score", "ssim", "psnr", "gen_song_id", "gen_genre_id"} <= set(res)
    assert not {"id50", "ridge_id50"} & set(res)  # no EEG in the oracle row
    info = json.loads((run / "reconstruct.json").read_text())
    assert info["oracle"] and info["ridge"] is None
    cli.trainer.predict(cli.model, datamodule=cli.datamodule, return_predictions=False)
    assert len(list(csv.DictReader(open(Path(cli.trainer.log_dir) / "predictions" / "manifest.csv")))) == 8


def _retrieval_generator(model, shift: int = 0):
    """A 'generator' that carries its conditioning: the true clip of the cached music segment whose CLAP embedding
    is nearest (shift > 0: of the conditioning ``shift`` rows further down the batch, i.e. shuffled conditioning)."""
    def generate(cond, segments, audio_length_s):
        raw = F.normalize(model._raw_clap.to(cond.device), dim=-1)
        idx = (F.normalize(cond.float(), dim=-1) @ raw.T).argmax(1).roll(shift)
        return model.true_audio.clips(idx.tolist())
    return generate


@pytest.fixture(scope="module")
def tiny_genre_classifier(tmp_path_factory):
    """A tiny random transformers audio classifier (10 labels) saved as a local folder."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    path = tmp_path_factory.mktemp("genre_classifier")
    cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
                         num_conv_pos_embedding_groups=2, classifier_proj_size=8, num_labels=10)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        Wav2Vec2ForSequenceClassification(cfg).save_pretrained(path)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True).save_pretrained(path)
    return str(path)


def test_pipeline_pairs_items_correctly_with_a_faithful_generator(aligned, tiny_genre_classifier):
    scores = {}
    for name, shift in (("oracle", 0), ("shuffled", 1)):
        cli = _recon_cli(aligned, "--model.init_args.oracle", "true", "--model.init_args.max_generate", "12",
                         "--data.batch_size", "64", "--model.init_args.genre_classifier", tiny_genre_classifier)
        cli.model.generate = _retrieval_generator(cli.model, shift)
        cli.trainer.test(cli.model, datamodule=cli.datamodule)
        scores[name] = json.loads((Path(cli.trainer.log_dir) / "metrics.json").read_text())
    o, s = scores["oracle"], scores["shuffled"]
    assert o["clap_score"]["mean"] == pytest.approx(1.0, abs=1e-4)
    assert o["ssim"]["mean"] == pytest.approx(1.0, abs=1e-4) and o["psnr"]["mean"] == pytest.approx(100.0)
    assert o["gen_id50"]["mean"] == 1.0 and o["gen_song_id"]["mean"] == 1.0
    assert s["clap_score"]["mean"] < o["clap_score"]["mean"] - 1e-3
    assert s["ssim"]["mean"] < 0.9 and s["psnr"]["mean"] < 50
    assert o["clap_score"]["chance"] < o["clap_score"]["mean"]
    assert o["genre_agreement"]["mean"] == 1.0 and o["genre_agreement"]["n"] == 12  # same audio, same label
    assert 0.0 <= s["genre_agreement"]["mean"] <= 1.0


def test_checkpoint_loading_is_strict_and_clap_must_match(aligned):
    from chanmusic.stages.init_from import CheckpointError, safe_load, state_dict_of
    from encoders.linear_reference import LinearReference

    _, _, ckpt = aligned
    sd = state_dict_of(safe_load(ckpt))
    # the configured encoder, used as is: right size loads exactly; wrong size is a clear error
    good = ReconstructModule(LinearReference(125, 125.0, 250, embed_dim=512), init_from=ckpt,
                             encoder_source="config")
    assert good.hparams.head == "linear"  # from the checkpoint, not the configured default (mlp)
    assert torch.equal(good.encoder.proj.weight, sd["encoder.proj.weight"])
    assert torch.equal(good.head.proj.weight, sd["head.proj.weight"])
    with pytest.raises(CheckpointError, match="shape mismatch"):
        ReconstructModule(LinearReference(125, 125.0, 250, embed_dim=64), init_from=ckpt,
                          encoder_source="config")
    cli = _recon_cli(aligned, "--model.init_args.clap_seed", "1")
    with pytest.raises(ValueError, match="differs from the CLAP the cache was built with"):
        cli.trainer.test(cli.model, datamodule=cli.datamodule)
