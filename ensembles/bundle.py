"""The exported ensemble bundle: one folder that predicts without segtune's training code.

    folder = export_bundle(module, manifest, "bundle/")      # model.torchscript.pt, model.onnx, manifest.json
    bundle = load_bundle("bundle/", runtime="onnx")          # or "torchscript"; device "cpu" | "cuda" | "auto"
    probs = bundle.predict(tiles)                            # (B, C, th, tw) 0..255 -> (B, K, th, tw)

Both networks are traced at the manifest's tile size: they take tiles of exactly that size (any
batch), and `ensembles.predict.predict_image` cuts images of any size into such tiles, after scaling
them as the members' training read them (the manifest's input_scale).

What loading checks: the manifest's keys and values, that each model file is a plain file inside
the folder (no symlink out of it) and matches the SHA-256 the manifest recorded at export. That
catches a truncated copy or a file changed after export; it does not make a bundle from an
untrusted source safe. Loading reads no pickled Python, but TorchScript and ONNX files are programs
that the runtime executes, and whoever wrote the bundle also wrote its manifest and checksums: open
only bundles you would run code from. Bundles of format_version 1 carry no checksums and are
loaded unchecked (`segtune predict` says so).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from ensembles.combine import EnsembleModule
from segtune.tiling import TILE_MULTIPLE

FORMAT_VERSION = 2
"""Raised when the folder layout or manifest keys change; load_bundle refuses newer bundles.
2 added input_scale and sha256; a version 1 bundle loads as input_scale null (images at their own size), unchecked."""
MANIFEST = "manifest.json"
MODEL_FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
REQUIRED_KEYS = ("classes", "palette", "in_channels", "mean", "std", "tile", "overlap", "input_scale", "members",
                 "combiner", "scores")
"""What export_bundle must be given; it adds format_version, segtune_version, files and sha256."""
EXPORT_TOLERANCE = 1e-3
"""Largest probability difference between an exported network and the eager module at export time."""
ONNX_OPSET = 17
_JIT_DEPRECATION = "`torch.jit.* is deprecated"
"""torch 2.14 deprecates TorchScript and warns on each call; the bundle keeps it because LibTorch (C++) loads it."""


class BundleError(ValueError):
    """A bundle folder that cannot be exported or loaded; the message names the file and what to do."""


class Bundle:
    """A loaded bundle: its manifest and a predict function over tiles of the manifest's size."""

    def __init__(self, folder: Path, manifest: dict, runtime: str, device: str, forward):
        self.folder, self.manifest, self.runtime, self.device = folder, manifest, runtime, device
        self._forward = forward

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Float32 tiles (B, C, th, tw) on the 0..255 scale -> class probabilities (B, K, th, tw)."""
        expected = (self.manifest["in_channels"], *self.manifest["tile"])
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(f"bundle {self.folder} takes tiles (B, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {tuple(batch.shape)}; cut images into tiles with ensembles.predict.predict_image")
        probs = self._forward(np.ascontiguousarray(batch, dtype=np.float32))
        if probs.shape[1] != len(self.manifest["classes"]):
            raise BundleError(f"{self.folder / MANIFEST} lists {len(self.manifest['classes'])} classes but its "
                              f"{self.runtime} network outputs {probs.shape[1]}; the manifest was edited or belongs "
                              "to another network: restore the bundle's own manifest.json or re-export the bundle")
        return probs


def export_bundle(module: EnsembleModule, manifest: dict, folder) -> Path:
    """Trace `module` to TorchScript and ONNX at the manifest's tile size, check both against it, write the folder."""
    problems = _manifest_problems(manifest)
    if problems:
        raise BundleError(f"export_bundle: the manifest {'; '.join(problems)}; fix the manifest it was given")
    manifest = {**manifest, "format_version": FORMAT_VERSION, "segtune_version": importlib.metadata.version("segtune"),
                "files": dict(MODEL_FILES)}
    try:
        json.dumps(manifest)
    except (TypeError, ValueError) as error:
        raise BundleError(f"export_bundle: the manifest is not JSON ({error}); convert numpy values with "
                          "int(), float() or .tolist()") from None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    module = copy.deepcopy(module).cpu().eval()  # traced on the CPU, so no device is baked in; the caller's is kept
    example = torch.full((1, manifest["in_channels"], *manifest["tile"]), 127.5)
    with warnings.catch_warnings(), torch.no_grad():
        # Tracing specialises on the tile shape on purpose (smp's shape checks warn about it); the
        # outputs are compared with the eager module below instead.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The TorchScript-based ONNX exporter is deprecated but needs neither onnxscript nor torch.export.
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        warnings.filterwarnings("ignore", _JIT_DEPRECATION, FutureWarning)
        # Freezing keeps only the weights the graph uses (smp encoders hold stages beyond encoder_depth).
        traced = torch.jit.freeze(torch.jit.trace(module, example, check_trace=False))
        torch.jit.save(traced, folder / MODEL_FILES["torchscript"])
        torch.onnx.export(module, (example,), folder / MODEL_FILES["onnx"], dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["images"], output_names=["probabilities"],
                          dynamic_axes={"images": {0: "batch"}, "probabilities": {0: "batch"}})
    manifest["sha256"] = {name: _sha256(folder / name) for name in MODEL_FILES.values()}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    _check_export(module, folder, manifest)
    return folder


def _check_export(module: EnsembleModule, folder: Path, manifest: dict) -> None:
    """Both exported networks must reproduce the eager module on a batch of two random tiles."""
    generator = torch.Generator().manual_seed(0)
    tiles = torch.rand((2, manifest["in_channels"], *manifest["tile"]), generator=generator) * 255
    with torch.no_grad():
        expected = module(tiles).numpy()
    if expected.shape[1] != len(manifest["classes"]):
        (folder / MANIFEST).unlink()
        raise BundleError(f"export_bundle: the manifest lists {len(manifest['classes'])} classes but the ensemble "
                          f"outputs {expected.shape[1]}; give it the classes the members were trained on")
    for runtime in MODEL_FILES:
        difference = float(np.abs(load_bundle(folder, runtime).predict(tiles.numpy()) - expected).max())
        if not difference <= EXPORT_TOLERANCE:
            (folder / MANIFEST).unlink()  # a folder without a manifest cannot be mistaken for a working bundle
            raise BundleError(f"export_bundle: {folder / MODEL_FILES[runtime]} differs from the eager ensemble by "
                              f"{difference:.2g} (tolerance {EXPORT_TOLERANCE}); a member does not trace faithfully, "
                              "leave it out of the ensemble or report the architecture")


def load_bundle(folder, runtime: str = "torchscript", device: str = "cpu") -> Bundle:
    """Open a bundle folder for `runtime` on `device` ("cuda" falls back to the CPU with a warning)."""
    folder = Path(folder)
    if runtime not in MODEL_FILES:
        raise BundleError(f"unknown runtime {runtime!r} for bundle {folder}; choose {' or '.join(MODEL_FILES)}")
    if device not in ("cpu", "cuda", "auto"):
        raise BundleError(f"unknown device {device!r} for bundle {folder}; choose cpu, cuda or auto")
    if not folder.is_dir():
        raise BundleError(f"bundle folder {folder} does not exist; pass the folder that export_bundle wrote")
    manifest = _read_manifest(folder)
    file = folder / manifest["files"][runtime]
    if not file.is_file():
        raise BundleError(f"bundle {folder} lacks its {runtime} network {file.name}; copy the whole bundle folder "
                          "or re-export it")
    _check_inside(file, folder)
    if manifest["sha256"] is not None and _sha256(file) != manifest["sha256"][file.name]:
        raise BundleError(f"{file} does not match the SHA-256 that {folder / MANIFEST} recorded at export; the file "
                          "was changed or damaged after export: copy the bundle again or re-export it")
    loader = _load_torchscript if runtime == "torchscript" else _load_onnx
    try:
        forward, device = loader(file, device)
    except Exception as error:  # noqa: BLE001 - any failure of the runtime to open the file means the same to the user
        raise BundleError(f"{file} cannot be loaded by {runtime} ({str(error).splitlines()[0][:300]}); the file is "
                          "corrupt or incomplete: copy the bundle again or re-export it") from error
    return Bundle(folder, manifest, runtime, device, forward)


def _sha256(file: Path) -> str:
    with file.open("rb") as opened:
        return hashlib.file_digest(opened, "sha256").hexdigest()


def _check_inside(file: Path, folder: Path) -> None:
    """A symlink out of the bundle would load (and, for a checksum-less bundle, run) a file nobody exported."""
    if not file.resolve().is_relative_to(folder.resolve()):
        raise BundleError(f"{file} is a link to {file.resolve()}, outside the bundle folder {folder}; a bundle holds "
                          "its own files: copy the file into the folder (cp -L) or re-export the bundle")


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path} is missing; {folder} is not a bundle folder (export_bundle writes {MANIFEST})")
    _check_inside(path, folder)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{path} is not readable JSON ({error}); copy the bundle again or re-export it") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path} is not a JSON object; re-export the bundle with export_bundle")
    version = manifest.get("format_version")  # untrusted input: an absent version is reported like a wrong one
    if version == 1:  # exported before these keys: images ran at their own size, files unchecked
        manifest = {"input_scale": None, "sha256": None, **manifest}
    problems = _manifest_problems(manifest)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        problems.append(f"has format_version {version!r}, this segtune reads up to {FORMAT_VERSION} "
                        "(upgrade segtune or re-export the bundle)")
    files, checksums = manifest.get("files"), manifest.get("sha256")
    if not (isinstance(files, dict) and all(isinstance(files.get(r), str) and Path(files[r]).name == files[r]
                                            for r in MODEL_FILES)):
        problems.append(f"needs 'files' naming the {' and '.join(MODEL_FILES)} networks inside the folder")
    elif not (checksums is None and version == 1
              or isinstance(checksums, dict) and all(isinstance(checksums.get(f), str) for f in files.values())):
        problems.append("needs 'sha256' holding the checksum of each file it names")
    if problems:
        raise BundleError(f"{path} {'; '.join(problems)}; re-export the bundle with export_bundle")
    return manifest


def _manifest_problems(manifest: dict) -> list[str]:
    """What is missing or inconsistent in a manifest, as phrases that follow its name."""
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        return [f"lacks key(s) {missing}"]
    problems = []
    classes, channels, tile = manifest["classes"], manifest["in_channels"], manifest["tile"]
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
        problems.append("'classes' must be a list of at least two names")
    elif not (isinstance(manifest["palette"], list) and len(manifest["palette"]) == len(classes)
              and all(isinstance(c, list | tuple) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                      for c in manifest["palette"])):
        problems.append(f"'palette' must hold one [r, g, b] (0-255) per class ({len(classes)})")
    if not (isinstance(channels, int) and channels >= 1):
        problems.append(f"'in_channels' {channels!r} must be a positive integer")
    elif not all(isinstance(manifest[key], list | tuple) and len(manifest[key]) == channels for key in ("mean", "std")):
        problems.append(f"'mean' and 'std' need one value per input channel ({channels})")
    if not (isinstance(tile, list | tuple) and len(tile) == 2
            and all(isinstance(t, int) and t > 0 and t % TILE_MULTIPLE == 0 for t in tile)):
        problems.append(f"'tile' {tile!r} must be [h, w], both positive multiples of {TILE_MULTIPLE}")
    if not (isinstance(manifest["overlap"], int | float) and 0 <= manifest["overlap"] < 1):
        problems.append(f"'overlap' {manifest['overlap']!r} must be a fraction in [0, 1)")
    scale = manifest["input_scale"]
    if not (scale is None or isinstance(scale, dict) and list(scale) == ["resize"] and isinstance(scale["resize"], list)
            and len(scale["resize"]) == 2 and all(isinstance(s, int) and s > 0 for s in scale["resize"])):
        problems.append(f"'input_scale' {scale!r} must be null (images read at their own size) or "
                        '{"resize": [H, W]} (images resized to H x W, as in training)')
    return problems


def _load_torchscript(file: Path, device: str):
    device = _resolve_device(device, torch.cuda.is_available(), file)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _JIT_DEPRECATION, FutureWarning)
        network = torch.jit.load(str(file), map_location=device).eval()

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return network(torch.from_numpy(batch).to(device)).float().cpu().numpy()
    return forward, device


def _load_onnx(file: Path, device: str):
    device = _resolve_device(device, "CUDAExecutionProvider" in onnxruntime.get_available_providers(), file)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    session = onnxruntime.InferenceSession(str(file), providers=providers)
    name = session.get_inputs()[0].name

    def forward(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: batch})[0]
    return forward, device


def _resolve_device(device: str, cuda_available: bool, file: Path) -> str:
    if device == "cuda" and not cuda_available:
        warnings.warn(f"device cuda asked for {file.name} but this runtime sees no GPU; running on the CPU")
    return "cuda" if device in ("cuda", "auto") and cuda_available else "cpu"
