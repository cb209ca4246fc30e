"""Whole images where they fit: networks of any size, one pass below --tile-above, tiles above it, same answer."""

import shutil

import numpy as np
import pytest
import torch
from tiny_ensembles import eager, edit_manifest, random_image
from torch import nn

from ensembles.bundle import export_bundle, load_bundle
from ensembles.combine import EnsembleModule, WeightedMean
from ensembles.predict import main, predict_image, whole_image_size
from segtune.tiling import overlap_pixels, tile_starts


class PointwiseAnySize:
    """A network that sees one pixel at a time and takes any size; it notes the shape of every batch."""

    def __init__(self, tile, any_size=True):
        self.manifest = {"tile": tile, "overlap": 0.25, "in_channels": 1, "classes": ["a", "b"],
                         "input_scale": None, "any_size": any_size}
        self.shapes = []

    def predict(self, batch):
        self.shapes.append(batch.shape)
        logits = np.stack([batch[:, 0], 255 - batch[:, 0]], 1) / 64
        exp = np.exp(logits - logits.max(1, keepdims=True))
        return exp / exp.sum(1, keepdims=True)


def test_whole_image_size_by_hand():
    # 100 x 130 -> multiples of 32: 128 x 160; 20 x 30 -> 32 x 32, but at least the 64 x 96 tile; 64 x 96 stays
    assert whole_image_size((100, 130), (64, 96)) == (128, 160)
    assert whole_image_size((20, 30), (64, 96)) == (64, 96)
    assert whole_image_size((64, 97), (64, 96)) == (64, 128)


def test_images_up_to_the_threshold_run_whole_and_larger_ones_in_tiles():
    # 150 x 200 is padded to 160 x 224 = 35840 pixels: whole at tile_above 0.03584 MP, tiled just below
    image = random_image(150, 200, 1, seed=3)
    whole, tiled = PointwiseAnySize([64, 96]), PointwiseAnySize([64, 96])
    by_whole = predict_image(whole, image, batch_size=3, tile_above=0.03584)
    by_tiles = predict_image(tiled, image, batch_size=3, tile_above=0.035839)
    assert whole.shapes == [(1, 1, 160, 224)]
    # tiles: rows 0, 48, 86 and columns 0, 72, 104 -> 9 tiles in batches of at most 3, each one tile in size:
    # above the threshold the network never sees more than batch_size tiles at once, however large the image
    assert tiled.shapes == [(3, 1, 64, 96)] * 3
    np.testing.assert_allclose(by_whole, by_tiles, atol=1e-6)  # a pointwise network: the same everywhere
    fixed = PointwiseAnySize([64, 96], any_size=False)
    predict_image(fixed, image, batch_size=9, tile_above=100)
    assert fixed.shapes == [(9, 1, 64, 96)]  # a bundle that takes its tile only is tiled whatever the threshold


@pytest.mark.parametrize("size", [(96, 64), (128, 160), (160, 224)])
def test_onnx_takes_other_sizes_than_the_export_size_and_equals_torchscript(rgb_ensemble, size):
    module, folder = rgb_ensemble  # exported at 64 x 96
    batch = np.stack([random_image(*size, 3, seed) for seed in (1, 2)]).transpose(0, 3, 1, 2).astype(np.float32)
    onnx_probs, onnx_share = load_bundle(folder, "onnx").predict_with_disagreement(batch)
    script_probs, script_share = load_bundle(folder, "torchscript").predict_with_disagreement(batch)
    assert onnx_probs.shape == (2, 3, *size) and onnx_share.shape == (2, *size)
    np.testing.assert_allclose(onnx_probs, script_probs, atol=1e-4)
    assert (onnx_share == script_share).mean() > 0.999  # argmax ties aside
    with torch.no_grad():
        np.testing.assert_allclose(onnx_probs, module(torch.from_numpy(batch)).numpy(), atol=1e-4)


@pytest.mark.parametrize("runtime", ["torchscript", "onnx"])
def test_whole_image_is_the_eager_module_on_the_mirrored_image(rgb_ensemble, runtime):
    # 100 x 130 is mirrored out to 128 x 160 (as validation pads in training) and cropped back
    module, folder = rgb_ensemble
    image = random_image(100, 130, 3, seed=6)
    padded = np.pad(image, ((0, 28), (0, 30), (0, 0)), mode="reflect")
    probs = predict_image(load_bundle(folder, runtime), image)
    np.testing.assert_allclose(probs, eager(module, padded)[:, :100, :130], atol=1e-4)


def local_member(seed: int) -> nn.Module:
    """Two 3x3 convolutions: each output pixel sees the input within 2 pixels of it, nothing further."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))


@pytest.fixture(scope="module")
def local_bundle(tmp_path_factory):
    """(module, folder): two local members averaged, 64 x 64 tiles with overlap 0.25 (16 pixels)."""
    module = EnsembleModule([local_member(0), local_member(1)], WeightedMean([1.0, 1.0]), (0.4,) * 3,
                            (0.3,) * 3).eval()
    manifest = {"classes": ["background", "crop", "weed"], "palette": [[0, 0, 0], [9, 9, 9], [99, 99, 99]],
                "in_channels": 3, "mean": [0.4] * 3, "std": [0.3] * 3, "tile": [64, 64], "overlap": 0.25,
                "input_scale": None, "members": [{"trial_id": "a"}, {"trial_id": "b"}],
                "combiner": {"kind": "mean"}, "scores": {}}
    return module, export_bundle(module, manifest, tmp_path_factory.mktemp("local"))


@pytest.mark.parametrize("runtime", ["torchscript", "onnx"])
def test_whole_and_tiled_agree_wherever_both_see_the_same_context(local_bundle, runtime):
    # 128 x 160 (multiples of 32, so the whole pass adds no mirrored border): tile rows start 0, 48, 64 and
    # columns 0, 48, 96. A pixel further than 2 pixels from every tile edge inside the image sees the same
    # input in each tile and in the whole image, so the blend of equal values equals the whole-image value.
    _, folder = local_bundle
    bundle = load_bundle(folder, runtime)
    image = random_image(128, 160, 3, seed=9)
    whole = predict_image(bundle, image)
    tiled = predict_image(bundle, image, tile_above=0)
    same = np.ones(image.shape[:2], bool)
    for axis, length in enumerate(image.shape[:2]):
        starts = tile_starts(length, 64, 64 - overlap_pixels(64, 0.25))
        for edge in {*starts, *(s + 64 for s in starts)} - {0, length}:
            index = [slice(None), slice(None)]
            index[axis] = slice(edge - 2, edge + 2)
            same[tuple(index)] = False
    assert starts == [0, 48, 96] and 0.5 < same.mean() < 0.9
    np.testing.assert_allclose(whole[:, same], tiled[:, same], atol=1e-5)
    assert (whole.argmax(0) == tiled.argmax(0)).mean() > 0.99  # near tile edges the zero padding shows, a little


def test_command_option_tile_above(local_bundle, tmp_path, capsys):
    from PIL import Image
    Image.fromarray(random_image(128, 160, 3, seed=9)).save(tmp_path / "field.png")
    with pytest.raises(SystemExit, match=r"--tile-above -1.0 must be 0 or more megapixels"):
        main([str(local_bundle[1]), str(tmp_path / "field.png"), str(tmp_path / "out"), "--tile-above", "-1"])
    for above in ("0", "4"):
        assert main([str(local_bundle[1]), str(tmp_path / "field.png"), str(tmp_path / above), "--tile-above", above,
                     "--probabilities"]) == 0
    tiled, whole = (np.load(tmp_path / above / "field_probs.npy") for above in ("0", "4"))
    assert not np.array_equal(tiled, whole)  # the option changed how the image ran
    fixed = shutil.copytree(local_bundle[1], tmp_path / "fixed")
    edit_manifest(fixed, lambda m: m.update(any_size=False))
    capsys.readouterr()
    assert main([str(fixed), str(tmp_path / "field.png"), str(tmp_path / "fixed_out"), "--probabilities"]) == 0
    assert "take 64x64 tiles only, so every image is tiled" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(tmp_path / "fixed_out" / "field_probs.npy"), tiled)


class FixedSizeMember(nn.Module):
    """Eager code that works at any size but traces to one: int() turns the traced shape into a constant."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        small = nn.functional.avg_pool2d(self.conv(x), 2)
        return nn.functional.interpolate(small, size=(int(x.shape[2]), int(x.shape[3])), mode="nearest")


def test_a_network_that_traces_to_its_tile_size_is_exported_for_tiles_only(tmp_path):
    torch.manual_seed(0)
    module = EnsembleModule([FixedSizeMember(), FixedSizeMember()], WeightedMean([1.0, 1.0]), (0.4,) * 3,
                            (0.3,) * 3).eval()
    manifest = {"classes": ["a", "b", "c"], "palette": [[0, 0, 0], [9, 9, 9], [99, 99, 99]], "in_channels": 3,
                "mean": [0.4] * 3, "std": [0.3] * 3, "tile": [32, 64], "overlap": 0.25, "input_scale": None,
                "members": [{"trial_id": "a"}, {"trial_id": "b"}], "combiner": {"kind": "mean"}, "scores": {}}
    with pytest.warns(UserWarning, match=r"torchscript network outputs 32x64 for an input at 64x128, so .* takes "
                                         r"tiles of 32x64 only \(any_size false\)"):
        folder = export_bundle(module, manifest, tmp_path / "bundle")
    bundle = load_bundle(folder, "onnx")
    assert bundle.manifest["any_size"] is False
    image = random_image(64, 128, 3, seed=2)  # tiled, so it still matches the eager module tile by tile
    np.testing.assert_allclose(predict_image(bundle, image)[:, :24, :48], eager(module, image[:32, :64])[:, :24, :48],
                               atol=1e-4)
