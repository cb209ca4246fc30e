"""A trial starts from named weights through the cache, offline: the test writes the weights file itself."""

import hashlib
import json

import pytest
import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.encoders._utils import patch_first_conv

from segtune import weights
from segtune.data import make_splits, make_synthetic
from trainables import TrialConfig, build_model, run_trial
from trainables.model import follow_weights, started_from

ENCODER = "tu-mobilenetv3_small_050"
FIRST_CONV = "model.conv_stem.weight"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """A trial never downloads: it reads the cache or fails."""
    def refuse(encoder, name):
        raise AssertionError(f"a trial tried to download {encoder} {name}")
    monkeypatch.setattr(weights, "download_encoder", refuse)


def write_cache_entry(cache, encoder=ENCODER, name="imagenet", change=None) -> dict:
    """The cache layout written by hand: <cache>/<encoder>/<name>/encoder.pt and weights.json. The state dict is
    a freshly built depth-5 encoder's, with `change` (key -> tensor) put in."""
    torch.manual_seed(123)
    state = {**smp.encoders.get_encoder(encoder, depth=5).state_dict(), **(change or {})}
    folder = cache / encoder / name
    folder.mkdir(parents=True)
    torch.save(state, folder / "encoder.pt")
    meta = {"encoder": encoder, "weights": name, "file": "encoder.pt", "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD), "source": "written by the test",
            "sha256": hashlib.sha256((folder / "encoder.pt").read_bytes()).hexdigest()}
    (folder / "weights.json").write_text(json.dumps(meta))
    return state


def named(cache, **more) -> TrialConfig:
    values = dict(encoder=ENCODER, encoder_depth=3, encoder_weights="imagenet", weights_cache=str(cache),
                  num_classes=3, max_epochs=1, steps_per_epoch=1, batch_size=2, seed=1)
    return TrialConfig(**{**values, **more})


def test_a_model_with_named_weights_loads_exactly_the_cached_tensors(tmp_path):
    marked = torch.arange(16 * 3 * 3 * 3, dtype=torch.float32).reshape(16, 3, 3, 3) / 100
    state = write_cache_entry(tmp_path, change={FIRST_CONV: marked})
    loaded = build_model(named(tmp_path)).encoder.state_dict()
    assert torch.equal(loaded[FIRST_CONV], marked)
    # depth 3 uses the first stages of the depth-5 file: every tensor it has is the file's
    assert loaded.keys() <= state.keys() and all(torch.equal(v, state[k]) for k, v in loaded.items())
    scratch = build_model(named(tmp_path, pretrained=False)).encoder.state_dict()
    assert not torch.equal(scratch[FIRST_CONV], marked)


def test_grayscale_input_sums_the_rgb_first_convolution_as_smp_and_timm_do(tmp_path):
    # output filter k sees R, G, B with weights 0.1, 0.2, 0.4 (times k + 1): one grey channel sees their sum 0.7 (k + 1)
    rgb = torch.tensor([0.1, 0.2, 0.4]).view(1, 3, 1, 1) * torch.arange(1, 17, dtype=torch.float32).view(16, 1, 1, 1)
    rgb = rgb.expand(16, 3, 3, 3).contiguous()
    write_cache_entry(tmp_path, change={FIRST_CONV: rgb})
    grey = build_model(named(tmp_path, in_channels=1, mean=(0.5,), std=(0.25,))).encoder.state_dict()[FIRST_CONV]
    assert grey.shape == (16, 1, 3, 3)
    assert torch.allclose(grey[:, 0, 0, 0], 0.7 * torch.arange(1, 17, dtype=torch.float32))
    # smp's own adaptation of a pretrained encoder to one channel gives the same tensor
    encoder = smp.encoders.get_encoder(ENCODER, depth=3)
    encoder.load_state_dict({k: v for k, v in torch.load(tmp_path / ENCODER / "imagenet" / "encoder.pt").items()
                             if k in encoder.state_dict()})
    patch_first_conv(encoder, new_in_channels=1, pretrained=True)
    assert torch.equal(encoder.state_dict()[FIRST_CONV], grey)


def test_normalisation_follows_the_weights_and_the_sha256_is_recorded(tmp_path):
    write_cache_entry(tmp_path)
    rgb = follow_weights(named(tmp_path))
    assert rgb.mean == IMAGENET_MEAN and rgb.std == IMAGENET_STD
    assert rgb.encoder_weights_sha256 == weights.file_sha256(tmp_path / ENCODER / "imagenet" / "encoder.pt")
    # one grey channel: the average of the RGB statistics, (0.485 + 0.456 + 0.406) / 3 = 0.449, 0.678 / 3 = 0.226
    grey = follow_weights(named(tmp_path, in_channels=1, mean=(0.5,), std=(0.25,)))
    assert grey.mean == pytest.approx((0.449,)) and grey.std == pytest.approx((0.226,))
    file = TrialConfig(encoder_weights=str(tmp_path / ENCODER / "imagenet" / "encoder.pt"), mean=(0.3,) * 3)
    assert follow_weights(file) == file  # a local file says nothing of its statistics: the data's are kept


def test_a_trial_searched_without_weights_needs_no_cache_entry_and_keeps_the_data_statistics(tmp_path):
    write_cache_entry(tmp_path)
    scratch = follow_weights(named(tmp_path, pretrained=False))
    assert scratch.mean == IMAGENET_MEAN and scratch.encoder_weights_sha256 is None  # read alike, started from nothing
    no_entry = named(tmp_path, encoder="tu-mobilenetv2_035", pretrained=False, mean=(0.3,) * 3)
    assert follow_weights(no_entry) == no_entry  # timm has no weights for it: the driver fetched nothing
    build_model(no_entry)
    with pytest.raises(FileNotFoundError, match="tu-mobilenetv2_035"):
        follow_weights(named(tmp_path, encoder="tu-mobilenetv2_035"))


def test_the_checkpoint_records_which_weights_the_encoder_started_from(tmp_path):
    write_cache_entry(tmp_path)
    data = make_synthetic(count=6)
    states = []
    run_trial(named(tmp_path, num_classes=data.num_classes), data, make_splits(data, 0.34, 0.0, seed=0),
              lambda result, state: states.append(state))
    saved = TrialConfig.from_dict(states[-1]["trial_config"])
    sha = weights.file_sha256(tmp_path / ENCODER / "imagenet" / "encoder.pt")
    assert (saved.encoder_weights, saved.encoder_weights_sha256, saved.mean) == ("imagenet", sha, IMAGENET_MEAN)
    assert started_from(saved) == {"encoder": ENCODER, "encoder_weights": "imagenet", "sha256": sha}
    assert started_from(TrialConfig(encoder_weights="/w/enc.pt"))["sha256"] is None
    assert started_from(TrialConfig())["encoder_weights"] is None


def test_a_name_missing_from_the_cache_fails_the_trial_naming_the_fetch_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"segtune weights fetch {ENCODER} --weights imagenet --to {tmp_path}"):
        build_model(named(tmp_path))
    with pytest.raises(ValueError, match="needs weights_cache"):
        TrialConfig(encoder_weights="imagenet")


def test_a_file_from_another_encoder_is_refused_naming_file_and_key(tmp_path):
    torch.save(smp.encoders.get_encoder("tu-resnet18", depth=5).state_dict(), tmp_path / "resnet.pt")
    state = smp.encoders.get_encoder(ENCODER, depth=5).state_dict()
    state[FIRST_CONV] = torch.zeros(8, 3, 3, 3)  # 8 filters where the encoder has 16
    torch.save(state, tmp_path / "narrow.pt")
    with pytest.raises(ValueError, match="resnet.pt lacks"):
        build_model(TrialConfig(encoder_weights=str(tmp_path / "resnet.pt")))
    with pytest.raises(ValueError, match=f"narrow.pt holds {FIRST_CONV} of shape \\(8, 3, 3, 3\\)"):
        build_model(TrialConfig(encoder_weights=str(tmp_path / "narrow.pt")))
