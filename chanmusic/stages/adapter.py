"""Reconstruction's adapter: a ridge map (``chanmusic.core.ridge.RidgeAdapter``, alpha by leave-one-out) from the
aligned embeddings of the TRAIN split to the raw cached CLAP embeddings AudioLDM conditions on."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from chanmusic.core.ridge import RidgeAdapter

__all__ = ["RIDGE_FILE", "train_embeddings", "fit_adapter"]

RIDGE_FILE = "ridge.safetensors"  #: the fitted adapter in the run's log directory


@torch.no_grad()
def train_embeddings(stage: Any, dm: Any, embed: Callable[[Tensor, Tensor], Tensor], clap_dim: int
                     ) -> tuple[Tensor, Tensor]:
    """``(aligned embeddings [N, clap_dim], music ids [N])`` of the whole train split in row order, sharded over the
    processes of ``stage``'s trainer and gathered."""
    from torch.utils.data import DataLoader, Subset

    ds = dm.dataset_for("train")
    n = len(ds)
    world = stage.trainer.world_size if stage._trainer is not None else 1
    rank = stage.trainer.global_rank if stage._trainer is not None else 0
    idx = list(range(rank, n, world))
    was_training = stage.training
    stage.eval()
    embs, music = [], []
    loader = DataLoader(Subset(ds, idx), batch_size=dm.batch_size, shuffle=False, num_workers=dm.num_workers)
    for batch in loader:
        e = embed(batch["eeg"].to(stage.device), batch["channel_mask"].to(stage.device))
        embs.append(e.float())
        music.append(batch["music"].to(stage.device).long())
    stage.train(was_training)
    E = torch.cat(embs) if embs else torch.zeros(0, clap_dim, device=stage.device)
    M = torch.cat(music) if music else torch.zeros(0, dtype=torch.long, device=stage.device)
    if world > 1:  # rank r holds rows r, r+W, ...: pad to equal length, gather, interleave back to 0..n-1
        per = math.ceil(n / world)
        pad = per - len(E)
        if pad:
            E = torch.cat([E, E.new_zeros(pad, E.shape[1])])
            M = torch.cat([M, M.new_zeros(pad)])
        E = stage.all_gather(E).transpose(0, 1).reshape(-1, E.shape[1])[:n]
        M = stage.all_gather(M).transpose(0, 1).reshape(-1)[:n]
    return E, M


def fit_adapter(stage: Any, dm: Any, embed: Callable[[Tensor, Tensor], Tensor], raw_clap: Tensor, clap_dim: int,
                alphas: Sequence[float], normalize: bool) -> RidgeAdapter:
    """The ridge adapter from the train split's aligned embeddings to their raw CLAP embeddings ``raw_clap[music]``."""
    E, M = train_embeddings(stage, dm, embed, clap_dim)
    return RidgeAdapter.fit(E.cpu(), raw_clap[M.cpu()], alphas, normalize_input=normalize)
