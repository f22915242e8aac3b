"""Ridge regression in closed form, solved here only: :func:`ridge_weights` / :func:`solve_normal` (the one solve),
and :class:`RidgeAdapter` (multi-output ridge with exact leave-one-out alpha selection, and its safetensors file).

Users: the reconstruction stage's adapter (aligned EEG embedding -> raw CLAP, ``chanmusic.stages.adapter``), the
pretraining probe's linear readout (``callbacks.probe``) and ``benchmarks/readout_probe.py``."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

log = logging.getLogger("chanmusic")

__all__ = ["DEFAULT_ALPHAS", "RidgeAdapter", "ridge_weights", "solve_normal"]

DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-3, 5, 17))  #: ridge alpha grid (LOO)


def solve_normal(gram: Tensor, cross: Tensor, alpha: float) -> Tensor:
    """The ridge solution ``W = (G + αI)⁻¹ C`` from the Gram matrix ``gram [D, D]`` (``XᵀX``) and ``cross [D, K]``
    (``XᵀY``)."""
    return torch.linalg.solve(gram + alpha * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device), cross)


def ridge_weights(X: Tensor, Y: Tensor, alpha: float) -> Tensor:
    """Weights ``[D, K]`` minimising ``|Y - XW|² + α|W|²`` for centred ``X [N, D]`` and ``Y [N, K]``: the primal
    solve when ``D <= N``, else the dual ``Xᵀ(XXᵀ + αI)⁻¹Y`` (the same solution with an ``N × N`` system)."""
    n, d = X.shape
    if d > n:
        return X.T @ solve_normal(X @ X.T, Y, alpha)
    return solve_normal(X.T @ X, X.T @ Y, alpha)


class RidgeAdapter:
    """Multi-output ridge regression ``Y ≈ X W + b`` in closed form (torch), alpha chosen by leave-one-out.

    ``fit(X [N, Din], Y [N, Dout], alphas)`` centres X and Y (the intercept is not penalised) and, for every alpha of
    the grid, computes the exact leave-one-out mean squared error from one eigendecomposition of ``XcᵀXc`` (the
    "efficient LOO" of ridge: residual_i / (1 - h_ii), with ``h_ii`` the diagonal of the hat matrix
    ``Xc (XcᵀXc + αI)⁻¹ Xcᵀ + 11ᵀ/N``). The alpha with the smallest error (one alpha for all outputs, as sklearn's
    ``RidgeCV`` with ``alpha_per_target=False``) gives ``W = solve(XcᵀXc + αI, XcᵀYc)`` and ``b = ȳ - x̄ W``.
    Everything is float64 and streamed over row chunks, so memory is O(D²) plus one chunk.

    ``normalize_input``: L2-normalise the rows of X before fitting and predicting (the aligned space is a cosine
    space: InfoNCE constrains directions, not norms). The flag is part of the adapter and is saved with it.

    Attributes: ``weight [Din, Dout]``, ``bias [Dout]`` (float32), ``alpha``, ``alphas`` and ``loo_mse`` (the
    curve), ``n_train``.
    """

    def __init__(self, weight: Tensor, bias: Tensor, alpha: float, alphas: Sequence[float] = (),
                 loo_mse: Sequence[float] = (), n_train: int = 0, normalize_input: bool = False):
        self.weight = weight.detach().float().cpu().contiguous()
        self.bias = bias.detach().float().cpu().contiguous()
        self.alpha = float(alpha)
        self.alphas = [float(a) for a in alphas]
        self.loo_mse = [float(e) for e in loo_mse]
        self.n_train = int(n_train)
        self.normalize_input = bool(normalize_input)

    @property
    def in_dim(self) -> int:
        return int(self.weight.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.weight.shape[1])

    @staticmethod
    def _prep(X: Tensor, normalize: bool) -> Tensor:
        X = X.detach().to("cpu", torch.float64)
        return F.normalize(X, dim=-1) if normalize else X

    @classmethod
    def fit(cls, X: Tensor, Y: Tensor, alphas: Sequence[float] = DEFAULT_ALPHAS, normalize_input: bool = False,
            chunk_size: int = 8192) -> "RidgeAdapter":
        """Fit on ``X [N, Din]`` -> ``Y [N, Dout]`` (see the class docstring)."""
        if X.dim() != 2 or Y.dim() != 2 or len(X) != len(Y):
            raise ValueError(f"ridge: expected X [N, Din] and Y [N, Dout], got {tuple(X.shape)} and {tuple(Y.shape)}")
        alphas = [float(a) for a in alphas]
        if not alphas or min(alphas) <= 0:
            raise ValueError(f"ridge: alphas must be positive, got {alphas}")
        n = len(X)
        if n < 3:
            raise ValueError(f"ridge: need at least 3 training rows, got {n}")
        Xd = cls._prep(X, normalize_input)
        Yd = Y.detach().to("cpu", torch.float64)
        if not (torch.isfinite(Xd).all() and torch.isfinite(Yd).all()):
            raise ValueError("ridge: X or Y contains NaN or inf")
        din, dout = Xd.shape[1], Yd.shape[1]
        x_mean, y_mean = Xd.mean(0), Yd.mean(0)
        G = torch.zeros(din, din, dtype=torch.float64)
        C = torch.zeros(din, dout, dtype=torch.float64)
        chunks = [slice(i, min(n, i + chunk_size)) for i in range(0, n, chunk_size)]
        for s in chunks:
            xc, yc = Xd[s] - x_mean, Yd[s] - y_mean
            G += xc.T @ xc
            C += xc.T @ yc
        lam, V = torch.linalg.eigh(G)
        top = float(lam.max()) if len(lam) else 0.0
        keep = lam > max(top, 1e-300) * 1e-12  # drop the null space (exactly 0 in Xc V; rounding noise otherwise)
        lam, V = lam[keep], V[:, keep]
        B = V.T @ C  # [r, Dout]
        sse = torch.zeros(len(alphas), dtype=torch.float64)
        for s in chunks:
            Z = (Xd[s] - x_mean) @ V  # [c, r]
            Yc = Yd[s] - y_mean
            Z2 = Z * Z
            for i, a in enumerate(alphas):
                d = 1.0 / (lam + a)
                h = Z2 @ d + 1.0 / n
                R = (Yc - (Z * d) @ B) / (1.0 - h).clamp_min(1e-12)[:, None]
                sse[i] += (R * R).sum()
        loo = (sse / (n * dout)).tolist()
        best = int(np.argmin(loo))
        alpha = alphas[best]
        if len(alphas) > 1 and best in (0, len(alphas) - 1):
            log.warning("ridge: the selected alpha %.3g is at the edge of the grid [%.3g, %.3g]; widen ridge_alphas",
                        alpha, min(alphas), max(alphas))
        W = solve_normal(G, C, alpha)
        b = y_mean - x_mean @ W
        return cls(W, b, alpha, alphas, loo, n, normalize_input)

    def predict(self, X: Tensor) -> Tensor:
        """``X [B, Din]`` -> ``[B, Dout]`` on X's device, float32."""
        x = X.float()
        if self.normalize_input:
            x = F.normalize(x, dim=-1)
        return x @ self.weight.to(x.device) + self.bias.to(x.device)

    __call__ = predict

    # ---- files -----------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a safetensors file (tensors + the settings as string metadata)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"alpha": repr(self.alpha), "alphas": json.dumps(self.alphas), "loo_mse": json.dumps(self.loo_mse),
                "n_train": str(self.n_train), "normalize_input": json.dumps(self.normalize_input),
                "format": "chanmusic.RidgeAdapter/1"}
        save_file({"weight": self.weight.contiguous(), "bias": self.bias.contiguous()}, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RidgeAdapter":
        """Read a file written by :meth:`save` (safetensors: no pickle)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ridge file not found: {path}")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != "chanmusic.RidgeAdapter/1":
                raise ValueError(f"{path}: not a chanmusic ridge adapter file")
            weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
        return cls(weight, bias, float(meta["alpha"]), json.loads(meta["alphas"]), json.loads(meta["loo_mse"]),
                   int(meta["n_train"]), json.loads(meta["normalize_input"]))

    def summary(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "alphas": self.alphas, "loo_mse": self.loo_mse, "n_train": self.n_train,
                "in_dim": self.in_dim, "out_dim": self.out_dim, "normalize_input": self.normalize_input}
