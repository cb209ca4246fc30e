"""An exported bundle reproduces the eager ensemble in both runtimes and describes itself."""

import hashlib
import importlib.metadata
import json

import shutil

import numpy as np
import pytest
import torch
from tiny_ensembles import edit_manifest, random_image

from ensembles.build import bundle_manifest
from ensembles.bundle import BundleError, export_bundle, load_bundle
from search.config import load_config
from segtune.data import make_synthetic
from trainables.config import TrialConfig


@pytest.mark.parametrize("runtime", ["torchscript", "onnx"])
@pytest.mark.parametrize("ensemble", ["rgb_ensemble", "gray_ensemble"])
def test_exported_network_matches_the_eager_module(request, ensemble, runtime):
    module, folder = request.getfixturevalue(ensemble)
    bundle = load_bundle(folder, runtime)
    channels, tile = bundle.manifest["in_channels"], bundle.manifest["tile"]
    # a batch of 3: neither the traced batch of 1 nor the export check's 2, so the batch axis must be free
    tiles = np.stack([random_image(*tile, channels, seed) for seed in range(3)]).transpose(0, 3, 1, 2)
    tiles = tiles.astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(tiles)).numpy()
    np.testing.assert_allclose(bundle.predict(tiles), expected, atol=1e-4)


def test_manifest_carries_what_prediction_needs(rgb_ensemble):
    _, folder = rgb_ensemble
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"] == {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
    assert manifest["segtune_version"] == importlib.metadata.version("segtune") and manifest["format_version"] == 3
    assert manifest["tile"] == [64, 96] and manifest["palette"][1] == [255, 128, 0] and manifest["input_scale"] is None
    assert manifest["any_size"] is True and manifest["outputs"] == ["probabilities", "disagreement"]
    assert manifest["sha256"] == {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
                                  for name in ("model.torchscript.pt", "model.onnx")}
    assert TrialConfig.from_dict(manifest["members"][1]["config"]).encoder == "tu-mobilenetv3_small_050"


def test_predict_refuses_sides_the_network_cannot_take(rgb_ensemble, tmp_path):
    with pytest.raises(ValueError, match=r"takes \(B, 3, h, w\) with h and w multiples of 32, got \(1, 3, 96, 70\)"):
        load_bundle(rgb_ensemble[1]).predict(np.zeros((1, 3, 96, 70), np.float32))
    fixed = shutil.copytree(rgb_ensemble[1], tmp_path / "bundle")
    edit_manifest(fixed, lambda m: m.update(any_size=False))  # what export writes when the larger check fails
    with pytest.raises(ValueError, match=r"takes tiles \(B, 3, 64, 96\), got \(1, 3, 96, 64\)"):
        load_bundle(fixed).predict(np.zeros((1, 3, 96, 64), np.float32))


@pytest.mark.parametrize("change, message", [
    ({"tile": [60, 96]}, "'tile' .* multiples of 32"),
    ({"palette": [[0, 0, 0]]}, "'palette' must hold one"),
    ({"scores": {"val_miou": np.float32(0.5)}}, "not JSON .* float"),
])
def test_export_refuses_a_bad_manifest_before_writing(rgb_ensemble, tmp_path, change, message):
    module, folder = rgb_ensemble
    manifest = json.loads((folder / "manifest.json").read_text())
    with pytest.raises(BundleError, match=message):
        export_bundle(module, {**manifest, **change}, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_export_refuses_a_manifest_whose_classes_the_ensemble_does_not_output(rgb_ensemble, tmp_path):
    module, folder = rgb_ensemble
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(classes=[*manifest["classes"], "stone"], palette=[*manifest["palette"], [9, 9, 9]])
    with pytest.raises(BundleError, match="the manifest lists 4 classes but the ensemble outputs 3"):
        export_bundle(module, manifest, tmp_path / "bundle")
    assert not (tmp_path / "bundle" / "manifest.json").exists()


@pytest.mark.parametrize("resize, input_scale", [((48, 64), {"resize": [48, 64]}), (None, None)])
def test_manifest_records_the_scale_the_search_read_images_at(resize, input_scale):
    cfg = load_config(None, {"resize": resize, "crop": (32, 64)})
    summary = {"chosen": "mean", "ensemble": [{"trial_id": "t1", "weight": 1.0}]}
    chosen_row = {"cv_miou": 0.5, "test_miou": 0.4, "test_miou_low": 0.3, "test_miou_high": 0.5, "gain": 0.02,
                  "gain_low": -0.01, "gain_high": 0.05, "gain_verdict": "cannot be told from zero"}
    manifest = bundle_manifest(cfg, make_synthetic(count=2), TrialConfig(), summary, chosen_row, 0.25)
    assert json.loads(json.dumps(manifest))["input_scale"] == input_scale and manifest["tile"] == [32, 64]
    assert manifest["members"] == summary["ensemble"]
    assert manifest["scores"] == {**chosen_row, "excluded_from_mean": []}
