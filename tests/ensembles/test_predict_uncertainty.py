"""`segtune predict --uncertainty`: the entropy and disagreement maps, against numbers worked out by hand."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_ensembles import edit_manifest, random_image
from torch import nn

from ensembles.bundle import BundleError, export_bundle, load_bundle
from ensembles.combine import EnsembleModule, WeightedMean
from ensembles.predict import main, normalised_entropy, predict_with_uncertainty, uncertainty_image

THRESHOLDS = (50.0, 100.0, 150.0)
"""Member m says class 0 where a pixel is brighter than THRESHOLDS[m] (logits [x - t, 0]), class 1 elsewhere."""
VALUES = (200, 0, 125, 75)
"""Pixel values of the four 8-row bands of the test image: 3, 3, 2 and 1 members say class 0."""


def threshold_member(threshold: float) -> nn.Module:
    """A 1x1 convolution with logits [x - threshold, 0] for a grayscale pixel x on the 0..255 scale."""
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0]).view(2, 1, 1, 1))
        conv.bias.copy_(torch.tensor([-threshold, 0.0]))
    return conv


@pytest.fixture(scope="module")
def threshold_bundle(tmp_path_factory):
    """Three threshold members averaged, normalisation off (mean 0, std 1/255), 32x32 tiles."""
    members = [threshold_member(t) for t in THRESHOLDS]
    module = EnsembleModule(members, WeightedMean([1.0, 1.0, 1.0]), (0.0,), (1 / 255,)).eval()
    manifest = {"classes": ["plant", "soil"], "palette": [[0, 200, 0], [120, 80, 40]], "in_channels": 1,
                "mean": [0.0], "std": [1 / 255], "tile": [32, 32], "overlap": 0.25, "input_scale": None,
                "members": [{"trial_id": f"t{i}", "weight": 1.0} for i in range(3)],
                "combiner": {"kind": "mean"}, "scores": {}}
    return export_bundle(module, manifest, tmp_path_factory.mktemp("threshold"))


def banded_image(height: int = 32, width: int = 32) -> np.ndarray:
    """(H, W, 1) uint8 image whose rows come in 8-row bands of VALUES, repeated down the image."""
    rows = np.array(VALUES, np.uint8).repeat(8)[np.arange(height) % 32]
    return np.broadcast_to(rows[:, None, None], (height, width, 1)).copy()


def expected_bands(values, height: int = 32, width: int = 32) -> np.ndarray:
    """The map whose 8-row bands hold `values` (one per band of banded_image)."""
    return np.array(values, np.uint8).repeat(8)[np.arange(height) % 32][:, None].repeat(width, 1)


def test_entropy_by_hand():
    # [0.5, 0.5]: -(2 * 0.5 ln 0.5) / ln 2 = 1; [1, 0]: 0 (0 ln 0 = 0);
    # [0.9, 0.1]: (0.9 * 0.10536 + 0.1 * 2.30259) / 0.69315 = 0.32508 / 0.69315 = 0.46900
    two = np.array([[0.5, 1.0, 0.9], [0.5, 0.0, 0.1]], np.float32)[:, None, :]
    np.testing.assert_allclose(normalised_entropy(two)[0], [1.0, 0.0, 0.46900], atol=1e-5)
    # over 3 classes: [1/3] * 3 -> ln 3 / ln 3 = 1; [0.5, 0.5, 0] -> ln 2 / ln 3 = 0.63093
    three = np.array([[1 / 3, 0.5], [1 / 3, 0.5], [1 / 3, 0.0]], np.float32)[:, None, :]
    np.testing.assert_allclose(normalised_entropy(three)[0], [1.0, 0.63093], atol=1e-5)


def test_uncertainty_grey_levels_by_hand():
    # 255 * [0, 1, 0.5, 1/3, 0.46900, 0.63093] = 0, 255, 127.5 (-> 128, to even), 85, 119.6, 160.9; outside clipped
    values = np.array([0.0, 1.0, 0.5, 1 / 3, 0.46900, 0.63093, -0.2, 1.3], np.float32)
    assert uncertainty_image(values).tolist() == [0, 255, 128, 85, 120, 161, 0, 255]
    assert uncertainty_image(values).dtype == np.uint8


@pytest.mark.parametrize("runtime", ["torchscript", "onnx"])
@pytest.mark.parametrize("tile_above", [4.0, 0.0])
def test_disagreement_and_entropy_of_threshold_members(threshold_bundle, runtime, tile_above):
    # 200: all 3 members say plant -> share 0; 0: all say soil -> 0; 125: 2 plant (t 50, 100), 1 soil (t 150) ->
    # ensemble plant (p = 2/3), share 1/3 -> 85; 75: 1 plant, 2 soil -> ensemble soil, share 1/3 -> 85.
    # entropy: [~1, ~0] -> 0; [2/3, 1/3] -> (2/3 ln 1.5 + 1/3 ln 3) / ln 2 = (0.27031 + 0.36620) / 0.69315
    # = 0.91830 -> 234.2 -> 234. Tiled (tile_above 0, 64x96 in 32x32 tiles) blends equal values: the same maps.
    bundle = load_bundle(threshold_bundle, runtime)
    size = (32, 32) if tile_above else (64, 96)
    probs, disagreement = predict_with_uncertainty(bundle, banded_image(*size), "disagreement", tile_above=tile_above)
    np.testing.assert_array_equal(disagreement, expected_bands([0, 0, 85, 85], *size))
    np.testing.assert_array_equal(probs.argmax(0), expected_bands([0, 1, 0, 1], *size))
    _, entropy = predict_with_uncertainty(bundle, banded_image(*size), "entropy", tile_above=tile_above)
    np.testing.assert_array_equal(entropy, expected_bands([0, 0, 234, 234], *size))


def test_command_writes_the_uncertainty_beside_each_mask(threshold_bundle, tmp_path, capsys):
    Image.fromarray(banded_image()[..., 0]).save(tmp_path / "field.png")
    assert main([str(threshold_bundle), str(tmp_path / "field.png"), str(tmp_path / "out"), "--uncertainty"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["field.png", "field_colour.png",
                                                                    "field_uncertainty.png"]
    written = Image.open(tmp_path / "out" / "field_uncertainty.png")
    assert written.mode == "L"  # 8-bit grey, without a value --uncertainty means entropy
    np.testing.assert_array_equal(np.asarray(written), expected_bands([0, 0, 234, 234]))
    assert main([str(threshold_bundle), str(tmp_path / "field.png"), str(tmp_path / "agree"),
                 "--uncertainty", "disagreement", "--runtime", "onnx"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "agree" / "field_uncertainty.png")),
                                  expected_bands([0, 0, 85, 85]))


def test_uncertainty_of_a_resized_bundle_has_the_image_size(rgb_ensemble, tmp_path):
    # members read images at half size (resize [64, 96]): the map is computed there and resized back, bilinear
    folder = shutil.copytree(rgb_ensemble[1], tmp_path / "bundle")
    edit_manifest(folder, lambda m: m.update(input_scale={"resize": [64, 96]}))
    image = random_image(128, 192, 3)
    Image.fromarray(image).save(tmp_path / "field.png")
    assert main([str(folder), str(tmp_path / "field.png"), str(tmp_path / "out"), "--uncertainty", "disagreement"]) == 0
    index = np.asarray(Image.open(tmp_path / "out" / "field.png"))
    uncertainty = np.asarray(Image.open(tmp_path / "out" / "field_uncertainty.png"))
    assert uncertainty.shape == index.shape == (128, 192)
    half = np.asarray(Image.fromarray(image).resize((96, 64), Image.BILINEAR))
    _, small = predict_with_uncertainty(load_bundle(rgb_ensemble[1]), half, "disagreement")
    assert small.min() == 0 and small.max() == 255  # two members: each pixel 0 (agree) or 255 (one differs)
    assert abs(float(uncertainty.mean()) - float(small.mean())) < 3  # bilinear upsampling keeps the mean


def test_disagreement_is_refused_before_any_image_where_the_bundle_cannot_give_it(rgb_ensemble, tmp_path):
    Image.fromarray(random_image(64, 96, 3)).save(tmp_path / "field.png")
    one = shutil.copytree(rgb_ensemble[1], tmp_path / "one")
    edit_manifest(one, lambda m: m.update(members=m["members"][:1]))
    with pytest.raises(SystemExit, match=r"--uncertainty disagreement needs two or more members, .*holds one; "
                                         "use --uncertainty entropy"):
        main([str(one), str(tmp_path / "field.png"), str(tmp_path / "out"), "--uncertainty", "disagreement"])
    older = shutil.copytree(rgb_ensemble[1], tmp_path / "older")
    edit_manifest(older, lambda m: [m.pop("any_size"), m.pop("outputs"), m.update(format_version=2)])
    with pytest.raises(SystemExit, match=r"needs the members' outputs, which bundle .*older \(format_version 2\) does "
                                         "not export; re-export it"):
        main([str(older), str(tmp_path / "field.png"), str(tmp_path / "out"), "--uncertainty", "disagreement"])
    assert not (tmp_path / "out").exists()
    with pytest.raises(BundleError, match=r"has no disagreement output \(format_version 2, onnx\)"):
        load_bundle(older, "onnx").predict_with_disagreement(np.zeros((1, 3, 64, 96), np.float32))
    assert main([str(older), str(tmp_path / "field.png"), str(tmp_path / "out"), "--uncertainty"]) == 0  # entropy


def test_disagreement_output_matches_the_members(rgb_ensemble):
    # the exported second output is the share of the 2 members whose argmax is not the ensemble's: 0, 0.5 or 1
    module, folder = rgb_ensemble
    image = random_image(64, 96, 3, seed=4)
    batch = image.transpose(2, 0, 1)[None].astype(np.float32)
    with torch.no_grad():
        x = (torch.from_numpy(batch) - module.mean) / module.std
        member_classes = torch.stack([member(x).argmax(1) for member in module.members], 1)
        ensemble_classes = module(torch.from_numpy(batch)).argmax(1, keepdim=True)
        share = (member_classes != ensemble_classes).float().mean(1).numpy()
    for runtime in ("torchscript", "onnx"):
        _, disagreement = load_bundle(folder, runtime).predict_with_disagreement(batch)
        assert disagreement.shape == (1, 64, 96)
        assert (disagreement == share).mean() > 0.999, runtime  # ties aside, pixel for pixel
    assert set(np.unique(share)) <= {0.0, 0.5, 1.0} and share.max() > 0
