"""Readout→channel maps as MNE scalp maps: the drawing function and a TensorBoard callback.

The map shows how much **the readout the model actually uses** draws on each electrode. A stage with
``channel_map(eeg, mask) -> ([B, C], kind)`` (the alignment stage: ``chanmusic.modules.heads.readout_channel_map``)
says it itself: CLS attention when the head reads the CLS, the head's own attention for the ``attention`` head,
attention rollout from the averaged tokens for the mean-based heads (the default ``temporal`` head). Other stages
(pretraining, whose projection head reads the CLS) use ``EncoderOutput.channel_attention [B, C]``, the CLS→channel
attention. Averaged over windows it is one number per electrode, drawn on the NMED montage
(``datamodules.nmed.nmed_montage``) with ``mne.viz.plot_topomap``; the title names the kind.

:class:`ChannelAttentionMaps` adds the map of the validation windows to TensorBoard (``add_figure``) every
``every_n_epochs`` epochs, or saves a PNG in the log dir under other loggers. Add it in YAML:

    trainer:
      callbacks:
        - class_path: callbacks.attention.ChannelAttentionMaps
          init_args: {every_n_epochs: 1, max_batches: 4}

``chanmusic.report.plots`` draws the same map from a trained model after the fact (``chanmusic compare`` / report).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch


def topomap_figure(values: Sequence[float] | np.ndarray, ch_names: Sequence[str], title: str = "",
                   cmap: str = "viridis", units: str = "attention (share)"):
    """A matplotlib figure with the scalp map of ``values`` (one per electrode of ``ch_names``, NMED montage).

    Electrodes without a montage position are left out (named in the subtitle)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import mne

    from datamodules.nmed import nmed_montage

    values = np.asarray(values, dtype=float).reshape(-1)
    if len(values) != len(ch_names):
        raise ValueError(f"topomap: {len(values)} values for {len(ch_names)} channel names")
    montage = nmed_montage()
    known = set(montage.ch_names)
    keep = [i for i, c in enumerate(ch_names) if c in known]
    if len(keep) < 3:
        raise ValueError(f"topomap: only {len(keep)} of the channels have montage positions")
    info = mne.create_info([ch_names[i] for i in keep], 125.0, "eeg")
    with mne.utils.use_log_level("error"):
        info.set_montage(montage, on_missing="ignore")
    import textwrap

    v = values[keep]
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    # colour range = the data's own range: attention near uniform (1/C each) would otherwise be one flat colour
    lo, hi = float(np.min(v)), float(np.max(v))
    im, _ = mne.viz.plot_topomap(v, info, axes=ax, show=False, cmap=cmap, contours=4, sensors=True,
                                 vlim=(lo, hi if hi > lo else lo + 1e-12))
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label(units + (f" (uniform = {1 / len(v):.4f})" if "share" in units else ""), fontsize=8)
    dropped = len(ch_names) - len(keep)
    text = "\n".join(textwrap.fill(line, 48) for line in title.splitlines()) if title else ""
    ax.set_title(text + (f"\n({dropped} electrodes without position left out)" if dropped else ""), fontsize=8)
    fig.tight_layout()
    return fig


class ChannelAttentionMaps(L.Callback):
    """Log the mean readout→channel map over (up to ``max_batches``) validation batches as a scalp map.

    Runs the model once more on those batches (no gradients): ``pl_module.channel_map`` when the stage has it,
    else the encoder's ``channel_attention`` (CLS attention); silent when neither gives a map. Needs the
    batches ``eeg`` and ``channel_mask``; channel names from ``trainer.datamodule.ch_names``.
    """

    def __init__(self, every_n_epochs: int = 1, max_batches: int = 4, tag: str = "channel_attention"):
        super().__init__()
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.max_batches = int(max_batches)
        self.tag = tag
        self._sum: torch.Tensor | None = None
        self._count = 0
        self.kind = "CLS attention"

    def _active(self, trainer: L.Trainer) -> bool:
        return not trainer.sanity_checking and trainer.current_epoch % self.every_n_epochs == 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sum, self._count = None, 0

    @torch.no_grad()
    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self._active(trainer) or batch_idx >= self.max_batches or not hasattr(pl_module, "encoder"):
            return
        if hasattr(pl_module, "channel_map"):
            att, self.kind = pl_module.channel_map(batch["eeg"], batch.get("channel_mask"))
        else:
            out = pl_module.encoder(batch["eeg"], batch.get("channel_mask"))
            att, self.kind = getattr(out, "channel_attention", None), "CLS attention"
        if att is None:
            return
        s = att.float().sum(0).cpu()
        self._sum = s if self._sum is None else self._sum + s
        self._count += att.shape[0]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._sum is None or not self._count or not trainer.is_global_zero:
            return
        mean = (self._sum / self._count).numpy()
        ch_names = list(getattr(trainer.datamodule, "ch_names", []) or [])
        if len(ch_names) != len(mean):
            return
        fig = topomap_figure(mean, ch_names, f"readout→channel map ({self.kind}), epoch {trainer.current_epoch}")
        try:
            exp = getattr(trainer.logger, "experiment", None)
            if exp is not None and hasattr(exp, "add_figure"):
                exp.add_figure(self.tag, fig, global_step=trainer.global_step)
            else:
                d = Path(trainer.log_dir or trainer.default_root_dir) / "attention"
                d.mkdir(parents=True, exist_ok=True)
                fig.savefig(d / f"epoch{trainer.current_epoch:03d}.png", dpi=100)
        finally:
            import matplotlib.pyplot as plt

            plt.close(fig)
