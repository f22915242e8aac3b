"""Fine-tuning recipes as optimiser parameter groups: each encoder's official recipe (experiments/encoders/*_recipe.yaml)
reaches the optimiser as configured; without a recipe the groups are unchanged. CPU, tiny sizes."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import yaml

from chanmusic.modules.optim import OptimRecipe, adamw_warmup_cosine, param_groups, recipe_param_groups
from chanmusic.stages.align import AlignModule
from encoders.cbramod import CBraModEncoder
from encoders.labram import LaBraMEncoder
from encoders.linear_reference import LinearReference
from chanmusic.core.electrodes import NMED_CH_NAMES

ROOT = Path(__file__).resolve().parent.parent
SFREQ, N_TIMES, C = 125.0, 250, 30
NAMES = list(NMED_CH_NAMES)[:C]
RECIPES = sorted((ROOT / "experiments/encoders").glob("*_recipe.yaml"))


def _recipe_yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / f"experiments/encoders/{name}_recipe.yaml").read_text())["model"]["init_args"]


def official_layer_id(var_name: str, num_max_layer: int) -> int:
    """LaBraM optim_factory.py get_num_layer_for_vit, verbatim (official names)."""
    if var_name in ("cls_token", "mask_token", "pos_embed"):
        return 0
    elif var_name.startswith("patch_embed"):
        return 0
    elif var_name.startswith("rel_pos_bias"):
        return num_max_layer - 1
    elif var_name.startswith("blocks"):
        layer_id = int(var_name.split('.')[1])
        return layer_id + 1
    else:
        return num_max_layer - 1


def official_name(bd: str) -> str:
    """braindecode Labram parameter name -> official LaBraM name (written out here, not our mapping)."""
    bd = {"position_embedding": "pos_embed", "temporal_embedding": "time_embed"}.get(bd, bd)
    bd = bd.replace("patch_embed.temporal_conv.", "patch_embed.")
    return bd.replace(".mlp.0.", ".mlp.fc1.").replace(".mlp.2.", ".mlp.fc2.")


def _labram(num_layers=3):
    torch.manual_seed(0)
    return LaBraMEncoder(C, SFREQ, N_TIMES, NAMES, embed_dim=100, num_layers=num_layers, num_heads=4)


def _lr_of(opt: torch.optim.Optimizer) -> dict[int, tuple[float, float]]:
    """id(param) -> (lr, weight_decay) of its group (``initial_lr`` once a scheduler is attached)."""
    return {id(p): (g.get("initial_lr", g["lr"]), g["weight_decay"]) for g in opt.param_groups for p in g["params"]}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_yaml_is_valid_and_names_its_source(path):
    init = yaml.safe_load(path.read_text())["model"]["init_args"]
    r = OptimRecipe.from_dict(init["recipe"])
    assert "/" in r.source and ".py" in r.source  # an official repo file is named


def test_labram_recipe_matches_the_official_layer_decay():
    """LaBraM's recipe YAML -> every parameter's lr and weight decay as run_class_finetuning.py computes them."""
    init = _recipe_yaml("labram")
    enc = _labram(num_layers=3)
    module = AlignModule(enc, clap_dim=16, head_hidden=8, lr=init["lr"], weight_decay=init["weight_decay"],
                         recipe=init["recipe"])
    opt = module.configure_optimizers()["optimizer"]
    got = _lr_of(opt)
    decay, n = init["recipe"]["layer_decay"], 3
    values = list(decay ** (n + 1 - i) for i in range(n + 2))  # run_class_finetuning.py LayerDecayValueAssigner
    skip = {"pos_embed", "cls_token", "time_embed"}              # modeling_finetune.py no_weight_decay()
    seen = 0
    for name, p in module.aligned.named_parameters():  # by checkpoint name (encoder.*, head.*)
        if name.startswith("encoder.model."):
            off = official_name(name[len("encoder.model."):])
            scale = values[official_layer_id(off, n + 2)]
            wd = 0.0 if (p.ndim <= 1 or off.endswith(".bias") or off in skip) else init["weight_decay"]
        else:  # head and logit scale: the top of the network (the official head sits above every block)
            scale, wd = 1.0, 0.0 if p.ndim <= 1 else init["weight_decay"]
        assert got[id(p)] == pytest.approx((init["lr"] * scale, wd)), name
        seen += 1
    assert seen == len(list(module.parameters()))
    lrs = sorted({v[0] for v in got.values()})
    assert len(lrs) == n + 2  # embeddings, three blocks, the top


def test_cbramod_recipe_groups_reach_the_trainer_optimiser(tmp_path):
    """The backbone / other-parameter learning rates of CBraMod's recipe are the optimiser's, through a short fit;
    the schedule scales every group by the same factor."""
    import lightning as L

    init = _recipe_yaml("cbramod")
    torch.manual_seed(0)
    enc = CBraModEncoder(C, SFREQ, N_TIMES, NAMES, n_layer=1, nhead=4, dim_feedforward=32)
    module = AlignModule(enc, clap_dim=16, head="attention", head_queries=2, lr=init["lr"],
                         weight_decay=init["weight_decay"], recipe=init["recipe"], id_repeats=1)
    g = torch.Generator().manual_seed(0)
    items = [{"eeg": torch.randn(C, N_TIMES, generator=g), "clap": torch.randn(16, generator=g),
              "channel_mask": torch.ones(C, dtype=torch.bool)} for _ in range(8)]
    loader = torch.utils.data.DataLoader(items, batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                            accelerator="cpu", gradient_clip_val=1.0)
        trainer.fit(module, loader)
    opt = trainer.optimizers[0]
    got = _lr_of(opt)
    for name, p in module.aligned.named_parameters():  # by checkpoint name (encoder.*, head.*)
        if not p.requires_grad:  # CBraMod's frozen mask_encoding is in no group
            assert id(p) not in got
            continue
        want = init["recipe"]["encoder_lr"] if name.startswith("encoder.") else init["recipe"]["head_lr"]
        assert got[id(p)] == (pytest.approx(want), pytest.approx(init["weight_decay"])), name  # decay on all
    factors = {round(gr["lr"] / gr["initial_lr"], 12) for gr in opt.param_groups}
    assert len(factors) == 1 and 0 < factors.pop() < 1  # one cosine factor for every group


def test_no_recipe_keeps_the_two_groups():
    enc = LinearReference(C, SFREQ, N_TIMES, NAMES, embed_dim=8)
    module = AlignModule(enc, clap_dim=16, head_hidden=8, lr=1e-3, weight_decay=0.05)
    opt = module.configure_optimizers()["optimizer"]
    ref = adamw_warmup_cosine(module.parameters(), 1e-3, 0.05, 0, 1)["optimizer"]
    assert [(len(g["params"]), g["lr"], g["weight_decay"]) for g in opt.param_groups] == \
        [(len(g["params"]), g["lr"], g["weight_decay"]) for g in ref.param_groups]
    # an empty recipe gives every parameter the same rate and weight decay as no recipe
    per_param = lambda groups: {id(p): (g.get("lr", 1e-3), g["weight_decay"]) for g in groups for p in g["params"]}  # noqa: E731
    assert per_param(recipe_param_groups(module.aligned.named_parameters(), 1e-3, 0.05, OptimRecipe())) == \
        per_param(param_groups(module.parameters(), 0.05))


def test_recipe_errors_name_the_field():
    with pytest.raises(ValueError, match=r"model.init_args.recipe: unknown key"):
        OptimRecipe.from_dict({"layer_decays": 0.6})
    with pytest.raises(ValueError, match=r"recipe.layer_decay"):
        OptimRecipe.from_dict({"layer_decay": 1.5})
    enc = LinearReference(C, SFREQ, N_TIMES, NAMES, embed_dim=8)
    module = AlignModule(enc, clap_dim=16, head_hidden=8, recipe={"layer_decay": 0.5})
    with pytest.raises(ValueError, match="has no layers"):
        module.configure_optimizers()
