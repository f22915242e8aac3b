"""One aligned model (chanmusic.modules.aligned), held by alignment, EEG2Mel and reconstruction: no stage subclasses
another, the checkpoint format is the one every chanmusic version wrote (``encoder.*``, ``head.*``, ``logit_scale``),
so checkpoints written before the restructuring still load, and reconstruction rebuilds the aligned model from one."""
import pytest
import torch

from chanmusic.core.checkpoints import check_fits, load_strict
from chanmusic.modules.aligned import AlignedModel
from chanmusic.stages.align import AlignModule
from chanmusic.stages.eeg2mel import EEG2MelModule
from chanmusic.stages.init_from import checkpoint_encoders
from chanmusic.stages.reconstruct import ReconstructModule
from encoders.channel_oriented import ChannelOrientedEncoder
from encoders.eeg2mel import EEG2Mel
from encoders.linear_reference import LinearReference

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _encoder(gain: bool = True):
    return ChannelOrientedEncoder(8, 64.0, 128, embed_dim=16, depth=1, num_heads=2, patch_size=32, channel_gain=gain)


def _old_layout(encoder, head, logit_scale) -> dict:
    """A state dict as the stages wrote it before they held an AlignedModel (logit_scale, encoder.*, head.*)."""
    return {"logit_scale": logit_scale, **{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
            **{f"head.{k}": v for k, v in head.state_dict().items()}}


def test_stages_hold_an_aligned_model_and_subclass_no_stage():
    for cls in (EEG2MelModule, ReconstructModule):
        assert not issubclass(cls, AlignModule)
    stages = [AlignModule(_encoder(), clap_dim=8),
              EEG2MelModule(EEG2Mel(8, 64.0, 128, base_filters=2, n_mels=4, n_frames=3), clap_dim=8),
              ReconstructModule(LinearReference(8, 64.0, 128), clap_dim=8)]
    for m in stages:
        assert isinstance(m.aligned, AlignedModel) and m.encoder is m.aligned.encoder and m.head is m.aligned.head


def test_the_checkpoint_keeps_the_flat_format_and_the_parameter_order():
    torch.manual_seed(0)
    m = AlignModule(_encoder(), clap_dim=8, head="temporal", readout="cls+tokens")
    sd = m.state_dict()
    assert list(sd) == list(_old_layout(m.encoder, m.head, m.aligned.logit_scale))
    # parameter order (the optimiser's groups, seeded initialisation): temperature, encoder, head, as before
    names = [n for n, _ in m.named_parameters()]
    assert names[0] == "aligned.logit_scale" and names[1].startswith("aligned.encoder.")
    assert names[-1].startswith("aligned.head.")
    assert checkpoint_encoders({"state_dict": sd}) == {"aligned": "encoder."}
    e2m = EEG2MelModule(EEG2Mel(8, 64.0, 128, base_filters=2, n_mels=4, n_frames=3), clap_dim=8)
    assert {k.split(".")[0] for k in e2m.state_dict()} == {"logit_scale", "encoder", "head", "mel_mean", "mel_std",
                                                          "mel_stats_ready"}


def test_a_checkpoint_of_the_old_layout_loads(tmp_path):
    torch.manual_seed(0)
    trained = AlignModule(_encoder(), clap_dim=8, head="temporal")
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.1)
    old = {k: v.clone() for k, v in _old_layout(trained.encoder, trained.head, trained.aligned.logit_scale).items()}
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": old, "hyper_parameters": {"head": "temporal", "init_encoder_from": None}}, path)
    fresh = AlignModule(_encoder(), clap_dim=8, head="temporal")
    check_fits(fresh, path)
    load_strict(fresh, old, str(path))
    for k, v in old.items():
        assert torch.equal(fresh.state_dict()[k], v), k
    # what alignment and reconstruction read from it
    rec = ReconstructModule(_encoder(), clap_dim=8, init_from=str(path), encoder_source="config")
    assert rec.hparams.head == "temporal" and type(rec.head).__name__ == "TemporalHead"
    for k, v in trained.aligned.state_dict().items():
        if not k.startswith("logit_scale"):
            assert torch.equal(rec.aligned.state_dict()[k], v), k
    aligned_init = AlignModule(_encoder(), clap_dim=8, init_from=str(path))
    assert all(torch.equal(aligned_init.encoder.state_dict()[k], v) for k, v in trained.encoder.state_dict().items())


def test_freezing_keeps_the_channel_gain_trainable():
    model = AlignedModel(_encoder(), clap_dim=8)
    model.freeze_encoder()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert [n for n in trainable if n.startswith("encoder.")] == ["encoder.channel_gain.weight"]
    assert "logit_scale" in trainable and any(n.startswith("head.") for n in trainable)
    with pytest.raises(ValueError, match="no weights to freeze"):
        AlignModule(_encoder(), clap_dim=8, freeze_encoder=True)
