"""LaBraM pretrained on the selected NMED data, as the authors' baseline was: its own tokenizer, then masked EEG modelling.

The authors of the channel-oriented paper pretrained LaBraM from scratch on NMED (``configs/labram_pretrain.yaml`` of
their code: 125 channels, 1-s windows, a tokenizer trained on NMED). LaBraM's
own recipe (``935963004/LaBraM``) is two runs: the VQ-NSP tokenizer (``run_vqnsp_training.py``), then masked EEG
modelling (MEM, ``run_labram_pretraining.py``: the student predicts the frozen tokenizer's code of each masked
channel × patch token, with a symmetric second pass on the complementary mask). One ``fit`` here does both, in
order (``tokenizer_fraction`` of the optimiser steps, then the rest), so a comparison row needs one pretraining step:

1. **tokenizer** (:class:`chanmusic.modules.vqnsp.VQNSP`, built from braindecode's ``Labram``): AdamW
   (``tokenizer_lr``, betas 0.9/0.99, weight decay 1e-4), warm-up then cosine, on the spectrum-prediction loss;
2. **MEM**: the student is the injected ``encoders.labram.LaBraMEncoder``'s braindecode ``Labram`` itself. Masking
   uses braindecode's model unchanged: a forward hook on its patch embedding replaces the masked tokens by the
   learned ``mask_token`` (official ``x * (1 - w) + mask_token * w``, before the CLS token and the embeddings are
   added); ``lm_head`` reads the final-norm tokens. Random masks of ``mask_ratio`` (0.5) of the ``C·P`` tokens per
   sample; loss = CE(masked) + CE(complement). AdamW (``lr``, betas 0.9/0.98, weight decay 0.05; no decay on the
   official skip list and 1-D parameters), warm-up then cosine; gradient-norm clip ``clip_grad`` (3.0).

The encoder sees exactly what alignment feeds it (``LaBraMEncoder.prepare``: channel mapping, 200 Hz, µV/100), so the
checkpoint's ``encoder.*`` keys load into alignment with ``init_from`` (the same encoder YAML). Logged:
``train/tokenizer_loss`` (+ ``_amplitude``, ``_phase``, ``_quant``), ``train/codebook_usage`` (codes in use),
``train/mem_loss``, ``train/mem_acc``; ``val/loss`` is the MEM loss (``inf`` while the tokenizer trains, so the
checkpoint selected on it is always one after MEM).
"""
from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoders.base import EEGEncoder
from chanmusic.modules.optim import param_groups, warmup_cosine
from chanmusic.modules.vqnsp import VQNSP


class LabramPretrainModule(L.LightningModule):
    """VQ-NSP tokenizer then masked EEG modelling of a ``LaBraMEncoder`` (see the module docstring).

    Args:
        encoder: ``encoders.labram.LaBraMEncoder`` (the student; YAML ``class_path``, as in alignment).
        clap_dim: unused (the CLI links it into every stage).
        tokenizer_fraction: share of the optimiser steps spent on the tokenizer (official: two runs, 100 + 50 epochs).
        tokenizer_depth: tokenizer encoder blocks (official 12; heads and width are the student's).
        decoder_depth: tokenizer decoder blocks (official 3).
        n_codes: codebook size (official README 8192).
        code_dim: code width (official 64).
        codebook_decay: EMA decay of the codebook (0.99).
        tokenizer_lr: tokenizer AdamW learning rate (official 5e-5 per 128 samples, ×8 GPUs: 4e-4 at its batch).
        tokenizer_weight_decay: tokenizer weight decay (official 1e-4).
        tokenizer_min_lr_ratio: tokenizer final learning rate as a fraction (official min_lr 1e-5).
        mask_ratio: share of masked tokens (official ``random_masking(..., mask_ratio=0.5)``).
        lr: MEM AdamW learning rate (official README 5e-4).
        weight_decay: MEM weight decay (official 0.05).
        min_lr_ratio: MEM final learning rate as a fraction (official 1e-5 / 5e-4).
        warmup_fraction: warm-up share of the steps (official 5 of 50 epochs; the tokenizer phase too).
        clip_grad: gradient-norm clip (official 3.0; null: none).
    """

    def __init__(self, encoder: EEGEncoder, clap_dim: int = 512, tokenizer_fraction: float = 0.5,
                 tokenizer_depth: int = 12, decoder_depth: int = 3, n_codes: int = 8192, code_dim: int = 64,
                 codebook_decay: float = 0.99, tokenizer_lr: float = 4e-4, tokenizer_weight_decay: float = 1e-4,
                 tokenizer_min_lr_ratio: float = 0.025, mask_ratio: float = 0.5, lr: float = 5e-4,
                 weight_decay: float = 0.05, min_lr_ratio: float = 0.02, warmup_fraction: float = 0.1,
                 clip_grad: float | None = 3.0):
        super().__init__()
        if not hasattr(encoder, "model_ch_names") or not hasattr(encoder, "prepare"):
            raise ValueError("model.init_args.encoder: LaBraM pretraining needs encoders.labram.LaBraMEncoder, got "
                             f"{type(encoder).__name__} — use experiments/encoders/labram.yaml")
        if not 0 < tokenizer_fraction < 1 or not 0 < mask_ratio < 1:
            raise ValueError("model.init_args: tokenizer_fraction and mask_ratio must be in (0, 1)")
        self.save_hyperparameters(ignore=["encoder"])
        self.automatic_optimization = False
        self.encoder = encoder
        d, heads = encoder.embed_dim, encoder.model.blocks[0].attn.num_heads
        self.tokenizer = VQNSP(encoder.n_model_channels, encoder.model_times, d, tokenizer_depth, heads,
                               decoder_depth, n_codes, code_dim, codebook_decay)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.lm_head = nn.Linear(d, n_codes)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.lm_head.weight, std=0.02)
        nn.init.zeros_(self.lm_head.bias)
        self._mask: Tensor | None = None
        encoder.model.patch_embed.register_forward_hook(self._apply_mask)

    # ---- masked EEG modelling -------------------------------------------------------------------------
    def _apply_mask(self, module: nn.Module, inputs: Any, out: Tensor) -> Tensor | None:
        """Forward hook on the student's patch embedding: masked tokens -> ``mask_token``."""
        if self._mask is None:
            return None
        w = self._mask.unsqueeze(-1).to(out.dtype)
        return out * (1 - w) + self.mask_token.to(out.dtype) * w

    def _random_mask(self, b: int, n: int) -> Tensor:
        """Official ``random_masking``: per sample, ``int(n · (1 − mask_ratio))`` tokens kept at random."""
        keep = int(n * (1 - self.hparams.mask_ratio))
        order = torch.rand(b, n, device=self.device).argsort(1)
        mask = torch.ones(b, n, dtype=torch.bool, device=self.device)
        mask.scatter_(1, order[:, :keep], False)
        return mask

    def _student_logits(self, x: Tensor, mask: Tensor) -> Tensor:
        self._mask = mask
        try:
            feats = self.encoder.model(x, return_features=True, ch_names=self.encoder.model_ch_names)["features"]
        finally:
            self._mask = None
        return self.lm_head(feats)

    def mem_loss(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(CE on masked + CE on the complement, accuracy on masked) of model input ``x [B, C, T]``."""
        self.tokenizer.eval()
        labels = self.tokenizer.codes(x, self.encoder.model_ch_names)
        mask = self._random_mask(*labels.shape)
        logits = self._student_logits(x, mask)
        logits_sym = self._student_logits(x, ~mask)
        loss = F.cross_entropy(logits[mask], labels[mask]) + F.cross_entropy(logits_sym[~mask], labels[~mask])
        return loss, (logits[mask].argmax(-1) == labels[mask]).float().mean()

    # ---- training ------------------------------------------------------------------------------------
    def _input(self, batch: dict[str, Any]) -> Tensor:
        return self.encoder.prepare(batch["eeg"], batch.get("channel_mask"))[0]

    def _tokenizer_steps(self) -> int:
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 2
        return max(1, int(round(self.hparams.tokenizer_fraction * total)))

    def in_tokenizer_phase(self) -> bool:
        return self.global_step < self._tokenizer_steps()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        (opt_tok, opt_mem), (sch_tok, sch_mem) = self.optimizers(), self.lr_schedulers()
        x, n = self._input(batch), len(batch["eeg"])
        if self.in_tokenizer_phase():
            self.tokenizer.train()
            loss, parts = self.tokenizer(x, self.encoder.model_ch_names)
            opt, sch = opt_tok, sch_tok
            self.log("train/tokenizer_loss", loss, prog_bar=True, batch_size=n)
            for k, v in parts.items():
                self.log(f"train/tokenizer_{k}", v, batch_size=n)
            self.log("train/codebook_usage", (self.tokenizer.quantizer.usage > 1e-3).float().sum(), batch_size=n)
        else:
            loss, acc = self.mem_loss(x)
            opt, sch = opt_mem, sch_mem
            self.log("train/mem_loss", loss, prog_bar=True, batch_size=n)
            self.log("train/mem_acc", acc, batch_size=n)
        opt.zero_grad()
        self.manual_backward(loss)
        if self.hparams.clip_grad:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.clip_grad, gradient_clip_algorithm="norm")
        opt.step()
        sch.step()
        self.log("train/loss", loss, batch_size=n)
        return loss.detach()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        n = len(batch["eeg"])
        if self.in_tokenizer_phase():
            loss, _ = self.tokenizer(self._input(batch), self.encoder.model_ch_names)
            self.log("val/tokenizer_loss", loss, batch_size=n, sync_dist=True)
            self.log("val/loss", math.inf, prog_bar=True, batch_size=n, sync_dist=True)
            return
        loss, acc = self.mem_loss(self._input(batch))
        self.log("val/loss", loss, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val/mem_acc", acc, batch_size=n, sync_dist=True)

    def configure_optimizers(self):
        """Two AdamW optimisers (tokenizer; student + mask token + LM head), each with warm-up then cosine over its
        phase; only the current phase's optimiser steps."""
        hp = self.hparams
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 2
        n_tok = self._tokenizer_steps()
        n_mem = max(1, total - n_tok)
        tok = torch.optim.AdamW(param_groups(self.tokenizer.parameters(), hp.tokenizer_weight_decay),
                                lr=hp.tokenizer_lr, betas=(0.9, 0.99))
        # official NeuralTransformerForMEM.no_weight_decay(): student cls_token, pos_embed, time_embed (+ 1-D)
        skip = {id(getattr(self.encoder.model, k)) for k in ("position_embedding", "cls_token", "temporal_embedding")}
        student = [p for p in self.encoder.parameters() if id(p) not in skip]
        groups = param_groups(student + [self.mask_token, *self.lm_head.parameters()], hp.weight_decay)
        groups[1]["params"] += [p for p in self.encoder.parameters() if id(p) in skip and p.requires_grad]
        mem = torch.optim.AdamW(groups, lr=hp.lr, betas=(0.9, 0.98), eps=1e-8)
        sch_tok = warmup_cosine(tok, round(hp.warmup_fraction * n_tok), n_tok, hp.tokenizer_min_lr_ratio)
        sch_mem = warmup_cosine(mem, round(hp.warmup_fraction * n_mem), n_mem, hp.min_lr_ratio)
        return [tok, mem], [sch_tok, sch_mem]
