"""chanmusic.modules.dino_head against lightly 1.6.0 (the [test] extra), the library the pretraining stage used
before: same state-dict keys and weights for a seed (old checkpoints load), same outputs, same EMA arithmetic and
momentum schedule; and the package no longer imports lightly."""
from __future__ import annotations

import lightly.models.modules.heads as lightly_heads  # the reference ([test] extra)
import pytest
import torch

from chanmusic.modules import dino_head
from tooling.uninstalled import run_uninstalled


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("norm_last_layer", [True, False])
def test_head_equals_lightlys_head(batch_norm, norm_last_layer):
    torch.manual_seed(3)
    ref = lightly_heads.DINOProjectionHead(16, 24, 8, 40, batch_norm=batch_norm, norm_last_layer=norm_last_layer)
    torch.manual_seed(3)
    ours = dino_head.DINOProjectionHead(16, 24, 8, 40, batch_norm=batch_norm, norm_last_layer=norm_last_layer)
    sr, so = ref.state_dict(), ours.state_dict()
    assert list(sr) == list(so)
    for k in sr:
        torch.testing.assert_close(so[k], sr[k], rtol=0, atol=0, msg=k)
    assert [p.requires_grad for p in ref.parameters()] == [p.requires_grad for p in ours.parameters()]
    # a lightly-head state dict (what old checkpoints hold) loads strictly into ours
    torch.manual_seed(7)
    other = lightly_heads.DINOProjectionHead(16, 24, 8, 40, batch_norm=batch_norm, norm_last_layer=norm_last_layer)
    ours.load_state_dict(other.state_dict(), strict=True)
    x = torch.randn(5, 16)
    ours.eval(), other.eval()
    torch.testing.assert_close(ours(x), other(x), rtol=0, atol=0)


def test_update_momentum_and_schedule_equal_lightlys():
    from lightly.models.utils import update_momentum
    from lightly.utils.scheduler import cosine_schedule

    torch.manual_seed(0)
    a, b = dino_head.DINOProjectionHead(6, 8, 4, 10), dino_head.DINOProjectionHead(6, 8, 4, 10)
    b2 = dino_head.DINOProjectionHead(6, 8, 4, 10)
    b2.load_state_dict(b.state_dict())
    dino_head.update_momentum(a, b, 0.93)
    update_momentum(a, b2, 0.93)
    for p, q in zip(b.parameters(), b2.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    for max_steps in (0, 1, 2, 7, 100):
        for step in range(0, max_steps + 3):
            assert dino_head.cosine_schedule(step, max_steps, 0.996, 1.0) == cosine_schedule(step, max_steps, 0.996, 1.0)
    with pytest.raises(ValueError):
        dino_head.cosine_schedule(-1, 10, 0.9, 1.0)


def test_package_runs_without_lightly_installed():
    """lightly made unfindable (as in an install without it): the stages import and a pretraining module builds."""
    r = run_uninstalled(
        "import chanmusic.cli, chanmusic.stages.align\n"
        "from chanmusic.stages.pretrain import PretrainModule\n"
        "from encoders.channel_oriented import ChannelOrientedEncoder\n"
        "enc = ChannelOrientedEncoder(4, 125.0, 250, embed_dim=16, depth=1, num_heads=2, patch_size=25)\n"
        "m = PretrainModule(enc, out_dim=32, head_hidden_dim=16, bottleneck_dim=8)\n"
        "print(type(m.head).__module__)\n")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert r.stdout.strip().endswith("chanmusic.modules.dino_head")


def test_lightly_and_librosa_are_test_references_only():
    import re
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    name = lambda req: re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()  # noqa: E731
    assert not {"lightly", "librosa"} & {name(r) for r in project["dependencies"]}
    assert {"lightly", "librosa"} <= {name(r) for r in project["optional-dependencies"]["test"]}
