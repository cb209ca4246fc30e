"""A broken bundle fails on loading with one BundleError that names the file and what to do."""

import json
import shutil

import pytest

from ensembles.bundle import BundleError, load_bundle


def _edit_manifest(folder, change):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


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
    "torchscript corrupt": (lambda f: (f / "model.torchscript.pt").write_bytes(b"PK\x03\x04 not a zip"), "torchscript",
                            r"model\.torchscript\.pt cannot be loaded by torchscript .* corrupt"),
    "onnx truncated": (lambda f: _truncate(f / "model.onnx"), "onnx",
                       r"model\.onnx cannot be loaded by onnx .* corrupt"),
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
