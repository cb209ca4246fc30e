"""Members trained at a `scale` in one ensemble: the bundle's input stays at the size the search read images at (its
input_scale), each member below scale 1 shrinks it itself (Rescaled) and answers at that size, where the combiner
was fitted; the bundle's tile is the largest-scale member's crop."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_ensembles import PALETTE, eager, random_image
from torch import nn

from ensembles.build import bundle_manifest, member_modules
from ensembles.bundle import export_bundle, load_bundle
from ensembles.combine import EnsembleModule, Rescaled, WeightedMean
from ensembles.predict import predict_image
from search.config import load_config
from segtune.data import make_synthetic
from trainables import TrialConfig, build_model

CHOSEN_ROW = {"cv_miou": 0.5, "test_miou": 0.4, "test_miou_low": 0.3, "test_miou_high": 0.5, "gain": 0.02,
              "gain_low": -0.01, "gain_high": 0.05, "gain_verdict": "cannot be told from zero"}


def test_a_half_scale_member_sees_2x2_averages_and_answers_at_the_input_size():
    # shrunk: [[0, 4], [8, 12]] (2x2 means); back to 4 columns at -0.25, 0.25, 0.75, 1.25 -> 0, 1, 3, 4 (row 0)
    x = torch.tensor([[0., 0, 4, 4], [0, 0, 4, 4], [8, 8, 12, 12], [8, 8, 12, 12]])[None, None]
    out = Rescaled(nn.Identity(), 0.5)(x)
    assert out[0, 0].tolist() == [[0, 1, 3, 4], [2, 3, 5, 6], [6, 7, 9, 10], [8, 9, 11, 12]]


def test_a_quarter_scale_member_sees_4x4_box_averages_not_samples():
    x = torch.rand(1, 2, 64, 96)
    seen = []
    member = Rescaled(nn.Identity(), 0.25)
    member.member.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    member(x)
    torch.testing.assert_close(seen[0][..., :16, :24], F.avg_pool2d(x, 4))
    assert seen[0].shape[-2:] == (32, 32)  # 16x24 edge-padded to multiples of 32 for the network


def tiny_member(scale: float) -> tuple[nn.Module, TrialConfig]:
    cfg = TrialConfig(num_classes=3, mean=(0.4,) * 3, std=(0.3,) * 3, scale=scale)
    return build_model(cfg).eval(), cfg


def test_a_mixed_scale_ensemble_gives_each_member_its_own_scale():
    torch.manual_seed(0)
    models = [tiny_member(1.0), tiny_member(0.5)]
    members = member_modules(models, (0.4,) * 3, (0.3,) * 3)
    assert members[0] is models[0][0] and isinstance(members[1], Rescaled)  # the input is at the size read
    ensemble = EnsembleModule(members, WeightedMean([1.0, 1.0]), (0.4,) * 3, (0.3,) * 3).eval()
    images = torch.rand(1, 3, 64, 64) * 255
    x = (images / 255 - 0.4) / 0.3
    with torch.no_grad():
        full = torch.softmax(models[0][0](x), 1)
        half = torch.softmax(F.interpolate(models[1][0](F.avg_pool2d(x, 2)), size=(64, 64), mode="bilinear"), 1)
        torch.testing.assert_close(ensemble(images), (full + half) / 2, atol=1e-5, rtol=1e-4)
    same = member_modules([(nn.Identity(), models[1][1])] * 2, (0.4,) * 3, (0.3,) * 3)
    assert all(m.factor == 0.5 for m in same)  # one scale below 1: each member still shrinks the input itself


@pytest.mark.parametrize("resize, scales, input_scale, tile", [
    ((242, 324), (0.5, 0.25), {"resize": [242, 324]}, [64, 128]),  # crop 32x64 over 0.5: the 0.5 member's crop
    (None, (0.5, 0.25), None, [64, 128]),
    (None, (1.0, 0.5), None, [32, 64]),
    ((48, 64), (0.3,), {"resize": [48, 64]}, [128, 224])])  # 32 / 0.3 = 106.7, 64 / 0.3 = 213.3: rounded up to 32
def test_the_manifest_keeps_the_read_size_and_a_tile_of_the_largest_scale_members_crop(resize, scales, input_scale,
                                                                                       tile):
    cfg = load_config(None, {"crop": (32, 64), "resize": resize})
    configs = [TrialConfig(scale=s) for s in scales]
    summary = {"chosen": "mean", "ensemble": [{"trial_id": f"t{i}", "weight": 1.0} for i in range(len(scales))]}
    manifest = json.loads(json.dumps(bundle_manifest(cfg, make_synthetic(count=2), configs[0], summary, CHOSEN_ROW,
                                                     0.25, configs)))
    assert (manifest["input_scale"], manifest["tile"]) == (input_scale, tile)
    assert [m["scale"] for m in manifest["members"]] == list(scales)


@pytest.mark.slow  # exports and checks two networks at two sizes: about 20 s here
def test_a_mixed_scale_bundle_exports_with_free_sizes_and_predicts_as_the_eager_ensemble(tmp_path):
    torch.manual_seed(0)
    models = [tiny_member(1.0), tiny_member(0.5)]
    module = EnsembleModule(member_modules(models, (0.4,) * 3, (0.3,) * 3), WeightedMean([1.0, 1.0]), (0.4,) * 3,
                            (0.3,) * 3).eval()
    manifest = {"classes": ["a", "b", "c"], "palette": PALETTE, "in_channels": 3, "mean": [0.4] * 3, "std": [0.3] * 3,
                "tile": [64, 64], "overlap": 0.25, "input_scale": None, "members": [], "combiner": {"kind": "mean"},
                "scores": {}}
    folder = export_bundle(module, manifest, tmp_path / "bundle")  # refuses a network that differs from the module
    assert json.loads((folder / "manifest.json").read_text())["any_size"]
    image = random_image(96, 128, 3)
    for runtime in ("torchscript", "onnx"):
        np.testing.assert_allclose(predict_image(load_bundle(folder, runtime), image), eager(module, image), atol=1e-4)
