"""A broken bundle fails on loading with one BundleError that names the file and what to do."""

import shutil

import numpy as np
import pytest
from tiny_ensembles import edit_manifest as _edit_manifest

from ensembles.bundle import BundleError, load_bundle


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _as_format_1(folder):
    """What export_bundle wrote before bundles recorded input_scale, checksums, any_size and outputs."""
    _edit_manifest(folder, lambda m: [m.pop(key) for key in ("input_scale", "sha256", "any_size", "outputs")]
                   + [m.update(format_version=1)])


def _link_outside(file):
    """Replace `file` by a symlink to a copy of it outside the bundle folder."""
    outside = file.parent.parent / f"outside-{file.name}"
    shutil.copy(file, outside)
    file.unlink()
    file.symlink_to(outside)


BREAKAGES = {  # name: (how to break a copy of the bundle, runtime, what the message must say)
    "manifest missing": (lambda f: (f / "manifest.json").unlink(), "torchscript", r"manifest\.json is missing"),
    "manifest not JSON": (lambda f: (f / "manifest.json").write_text("{'classes': "), "torchscript",
                          r"manifest\.json is not readable JSON"),
    "manifest lacks tile": (lambda f: _edit_manifest(f, lambda m: m.pop("tile")), "onnx",
                            r"manifest\.json lacks key\(s\) \['tile'\]"),
    "manifest from a newer segtune": (lambda f: _edit_manifest(f, lambda m: m.update(format_version=99)), "onnx",
                                      r"manifest\.json has format_version 99.*upgrade segtune"),
    "torchscript missing": (lambda f: (f / "model.torchscript.pt").unlink(), "torchscript",
                            r"lacks its torchscript network model\.torchscript\.pt"),
    "torchscript changed after export": (lambda f: (f / "model.torchscript.pt").write_bytes(b"PK\x03\x04 other"),
                                         "torchscript", r"model\.torchscript\.pt does not match the SHA-256 that "
                                                        r".*manifest\.json recorded at export"),
    "onnx truncated": (lambda f: _truncate(f / "model.onnx"), "onnx", r"model\.onnx does not match the SHA-256"),
    "onnx truncated, no checksums (format 1)": (lambda f: [_as_format_1(f), _truncate(f / "model.onnx")], "onnx",
                                                r"model\.onnx cannot be loaded by onnx .* corrupt"),
    "checksums removed": (lambda f: _edit_manifest(f, lambda m: m.pop("sha256")), "onnx",
                          r"manifest\.json needs 'sha256' holding the checksum of each file"),
    "network links out of the folder": (lambda f: _link_outside(f / "model.onnx"), "onnx",
                                        r"model\.onnx is a link to .*outside-model\.onnx, outside the bundle folder"),
    "manifest links out of the folder": (lambda f: _link_outside(f / "manifest.json"), "onnx",
                                         r"manifest\.json is a link to .* outside the bundle folder"),
    "palette shorter than classes": (lambda f: _edit_manifest(f, lambda m: m["palette"].pop()), "onnx",
                                     r"manifest\.json 'palette' must hold one \[r, g, b\] \(0-255\) per class \(3\)"),
    "input_scale neither null nor a resize": (lambda f: _edit_manifest(f, lambda m: m.update(input_scale={"scale": 2})),
                                              "torchscript", r"'input_scale' \{'scale': 2\} must be null .*resize"),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_broken_bundle_is_named(rgb_ensemble, tmp_path, name):
    breakage, runtime, message = BREAKAGES[name]
    folder = shutil.copytree(rgb_ensemble[1], tmp_path / "bundle")
    breakage(folder)
    with pytest.raises(BundleError, match=message) as error:
        load_bundle(folder, runtime)
    assert str(folder) in str(error.value)


def test_missing_folder_and_unknown_runtime(rgb_ensemble, tmp_path):
    with pytest.raises(BundleError, match=f"bundle folder {tmp_path / 'nowhere'} does not exist"):
        load_bundle(tmp_path / "nowhere")
    with pytest.raises(BundleError, match="unknown runtime 'tensorrt'.*choose torchscript or onnx"):
        load_bundle(rgb_ensemble[1], runtime="tensorrt")


@pytest.mark.parametrize("runtime", ["torchscript", "onnx"])
def test_manifest_whose_classes_disagree_with_the_network_is_named(rgb_ensemble, tmp_path, runtime):
    folder = shutil.copytree(rgb_ensemble[1], tmp_path / "bundle")
    _edit_manifest(folder, lambda m: [m["classes"].append("stone"), m["palette"].append([9, 9, 9])])
    bundle = load_bundle(folder, runtime)
    with pytest.raises(BundleError, match=rf"{folder / 'manifest.json'} lists 4 classes but its {runtime} network "
                                          r"outputs 3; .*restore the bundle's own manifest\.json or re-export"):
        bundle.predict(np.zeros((1, 3, 64, 96), np.float32))
