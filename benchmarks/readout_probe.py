#!/usr/bin/env python
"""Where does the music signal live in the channel-oriented encoder's output? Ridge probes of frozen features.

    python benchmarks/readout_probe.py DATA_ROOT CACHE_DIR [PRETRAIN_CKPT]

For music and the no-music control (``--data.control shift``) alike, fits a ridge map (alpha 1 and 10, features
standardised on the train split) from each feature set of the TRAIN windows to their CLAP embeddings and scores
the TEST windows (song_id: every song present; id50): ``raw25`` the EEG averaged to 25 Hz and flattened (what
the linear reference sees), ``cls`` the encoder's CLS, ``meantok`` the mean of its output tokens (what a
mean-pooling readout sees), ``flattok`` its tokens flattened per electrode × patch (a channel-keeping readout).
docs/learning_curve.md reports what it measured. Not part of ``make bench`` (minutes).
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) not in (2, 3):
        raise SystemExit(__doc__)
    warnings.filterwarnings("ignore")
    import torch
    import torch.nn.functional as F

    from chanmusic.core.ridge import ridge_weights
    from chanmusic.evaluation.metrics import Identification
    from chanmusic.stages.init_from import load_encoder_weights
    from datamodules.datamodule import NMEDDataModule
    from datamodules.windows import collate_batch
    from encoders.channel_oriented import ChannelOrientedEncoder

    torch.set_num_threads(1)
    root, cache = argv[0], argv[1]

    def load(control: str) -> dict:
        dm = NMEDDataModule(root=root, cache_dir=cache, test_fraction=0.2, control=control, window_s=2.0,
                            clap="tiny-random")
        dm.setup("fit")
        dm.setup("test")
        return {p: collate_batch(dm.dataset_for(p).__getitems__(list(range(len(dm.dataset_for(p))))))
                for p in ("train", "test")}

    def score(P: torch.Tensor, te: dict) -> dict:
        out = {}
        for name, kind, n_way in (("id50", "segment", 50), ("song_id", "song", None)):
            m = Identification(n_way, kind, 10, 0)
            m.update(P, te["clap"], te["music"], te["song"], te["genre"], te["stimulus"], te["start"], te["length"],
                     te["segment"])
            out[name] = round(float(m.compute()["mean"]), 3)
        return out

    def ridge(X: torch.Tensor, Y: torch.Tensor, Xt: torch.Tensor, alpha: float) -> torch.Tensor:
        mu, sd = X.mean(0), X.std(0) + 1e-6
        X, Xt = (X - mu) / sd, (Xt - mu) / sd
        ym, n = Y.mean(0), len(X)
        return (Xt @ ridge_weights(X, Y - ym, alpha * n) + ym).float()

    data = {c: load(c) for c in ("none", "shift")}
    C, T = data["none"]["train"]["eeg"].shape[1:]
    enc = ChannelOrientedEncoder(C, 125.0, T, embed_dim=64, depth=2, num_heads=4, patch_size=125)
    if len(argv) == 3:
        load_encoder_weights(enc, argv[2], "teacher")
    enc.eval()

    def features(x: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = []
        with torch.no_grad():
            for i in range(0, len(x), 128):
                o = enc(x[i:i + 128])
                t = o.tokens.view(len(o.tokens), C, -1, enc.embed_dim)
                parts.append((o.pooled, t.mean((1, 2)), t.flatten(1)))
        cls, mean, flat = (torch.cat(z) for z in zip(*parts))
        return {"raw25": F.avg_pool1d(x, 5).flatten(1), "cls": cls, "meantok": mean, "flattok": flat}

    for control in ("none", "shift"):
        tr, te = data[control]["train"], data[control]["test"]
        f_tr, f_te = features(tr["eeg"]), features(te["eeg"])
        for kind in f_tr:
            for alpha in (1.0, 10.0):
                res = score(ridge(f_tr[kind].double(), tr["clap"].double(), f_te[kind].double(), alpha), te)
                print(f"control={control:5s} {kind:8s} alpha={alpha:<4} {res}", flush=True)


if __name__ == "__main__":
    main()
