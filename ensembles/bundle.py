"""The exported ensemble bundle: one folder that predicts without segtune's training code.

    folder = export_bundle(module, manifest, "bundle/")      # model.torchscript.pt, model.onnx, manifest.json
    bundle = load_bundle("bundle/", runtime="onnx")          # or "torchscript"; device "cpu" | "cuda" | "auto"
    probs = bundle.predict(images)                           # (B, C, h, w) 0..255 -> (B, K, h, w)
    probs, disagreement = bundle.predict_with_disagreement(images)   # and (B, h, w): share of members

Both networks are traced at the manifest's tile size with the batch, height and width axes free, and
checked at export against the eager ensemble at the tile size and at a larger one: when both agree
the manifest says "any_size": true and they take any batch of images whose sides are multiples of
32; otherwise they take tiles of the manifest's size only. `ensembles.predict.predict_image` runs
whole images where the network takes them and they fit, and cuts the others into tiles, after
scaling them as the members' training read them (the manifest's input_scale).

Each network has two outputs: the ensemble's class probabilities, and the members' disagreement per
pixel (the share of members whose most probable class is not the ensemble's), so a person can see
where the members differ without the bundle exporting every member's probabilities.

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

FORMAT_VERSION = 3
"""Raised when the folder layout or manifest keys change; load_bundle refuses newer bundles.
2 added input_scale and sha256; a version 1 bundle loads as input_scale null (images at their own size), unchecked.
3 added any_size and outputs (the disagreement output); versions 1 and 2 load as tiles only, probabilities only."""
MANIFEST = "manifest.json"
MODEL_FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
REQUIRED_KEYS = ("classes", "palette", "in_channels", "mean", "std", "tile", "overlap", "input_scale", "members",
                 "combiner", "scores")
"""What export_bundle must be given; it adds format_version, segtune_version, files, any_size, outputs and sha256."""
OUTPUTS = ["probabilities", "disagreement"]
"""The networks' outputs, in order (format_version 3); older bundles output probabilities only."""
EXPORT_TOLERANCE = 1e-3
"""Largest probability difference between an exported network and the eager module at export time."""
ANY_SIZE_CHECK = (TILE_MULTIPLE, 2 * TILE_MULTIPLE)
"""Pixels added to the tile's height and width for the export check at another size than the traced one."""
ONNX_OPSET = 17
_JIT_DEPRECATION = "`torch.jit.* is deprecated"
"""torch 2.14 deprecates TorchScript and warns on each call; the bundle keeps it because LibTorch (C++) loads it."""


class BundleError(ValueError):
    """A bundle folder that cannot be exported or loaded; the message names the file and what to do."""


class Bundle:
    """A loaded bundle: its manifest and predict functions over images the network takes.

    forward maps a float32 batch to probabilities; forward_both, where the network has the
    disagreement output, to (probabilities, disagreement).
    """

    def __init__(self, folder: Path, manifest: dict, runtime: str, device: str, forward, forward_both=None):
        self.folder, self.manifest, self.runtime, self.device = folder, manifest, runtime, device
        self._forward, self._forward_both = forward, forward_both

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Float32 images (B, C, h, w) on the 0..255 scale -> class probabilities (B, K, h, w).

        h, w: the manifest's tile, or any multiples of 32 when the manifest says any_size."""
        return self._checked(self._forward(self._input(batch)))

    def predict_with_disagreement(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As predict, with the share of members (B, h, w) whose most probable class is not the ensemble's."""
        if self._forward_both is None:
            raise BundleError(f"bundle {self.folder} has no disagreement output (format_version "
                              f"{self.manifest['format_version']}, {self.runtime}); re-export it with this segtune")
        probs, disagreement = self._forward_both(self._input(batch))
        return self._checked(probs), disagreement

    def _input(self, batch: np.ndarray) -> np.ndarray:
        channels, (tile_h, tile_w) = self.manifest["in_channels"], self.manifest["tile"]
        if self.manifest["any_size"]:
            fits = (batch.ndim == 4 and batch.shape[1] == channels
                    and all(side % TILE_MULTIPLE == 0 for side in batch.shape[2:]))
            takes = f"(B, {channels}, h, w) with h and w multiples of {TILE_MULTIPLE}"
        else:
            fits = batch.ndim == 4 and tuple(batch.shape[1:]) == (channels, tile_h, tile_w)
            takes = f"tiles (B, {channels}, {tile_h}, {tile_w})"
        if not fits:
            raise ValueError(f"bundle {self.folder} takes {takes}, got {tuple(batch.shape)}; predict images of any "
                             "size with ensembles.predict.predict_image")
        return np.ascontiguousarray(batch, dtype=np.float32)

    def _checked(self, probs: np.ndarray) -> np.ndarray:
        if probs.shape[1] != len(self.manifest["classes"]):
            raise BundleError(f"{self.folder / MANIFEST} lists {len(self.manifest['classes'])} classes but its "
                              f"{self.runtime} network outputs {probs.shape[1]}; the manifest was edited or belongs "
                              "to another network: restore the bundle's own manifest.json or re-export the bundle")
        return probs


class _ExportedEnsemble(torch.nn.Module):
    """The ensemble with its second output: per pixel, the share of members whose argmax is not the ensemble's
    (a member made of fold models: its fold average's).

    Its probabilities are EnsembleModule.forward's (both from EnsembleModule.combined, whichever way the combiner
    takes fold models); the export check compares them with the module's own forward.
    """

    def __init__(self, module: EnsembleModule):
        super().__init__()
        self.module = module

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs, members = self.module.combined(images)
        differs = members.argmax(2) != probs.argmax(1, keepdim=True)
        return probs, differs.float().mean(1)


def export_bundle(module: EnsembleModule, manifest: dict, folder) -> Path:
    """Trace `module` to TorchScript and ONNX, check both against it at two sizes, write the folder."""
    problems = _manifest_problems(manifest)
    if problems:
        raise BundleError(f"export_bundle: the manifest {'; '.join(problems)}; fix the manifest it was given")
    manifest = {**manifest, "format_version": FORMAT_VERSION, "segtune_version": importlib.metadata.version("segtune"),
                "files": dict(MODEL_FILES), "any_size": True, "outputs": OUTPUTS}
    try:
        json.dumps(manifest)
    except (TypeError, ValueError) as error:
        raise BundleError(f"export_bundle: the manifest is not JSON ({error}); convert numpy values with "
                          "int(), float() or .tolist()") from None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    module = copy.deepcopy(module).cpu().eval()  # traced on the CPU, so no device is baked in; the caller's is kept
    exported = _ExportedEnsemble(module).eval()
    example = torch.full((1, manifest["in_channels"], *manifest["tile"]), 127.5)
    with warnings.catch_warnings(), torch.no_grad():
        # Tracing specialises on the tile shape on purpose (smp's shape checks warn about it); the
        # outputs are compared with the eager module below instead.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The TorchScript-based ONNX exporter is deprecated but needs neither onnxscript nor torch.export.
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        warnings.filterwarnings("ignore", _JIT_DEPRECATION, FutureWarning)
        # Freezing keeps only the weights the graph uses (smp encoders hold stages beyond encoder_depth).
        traced = torch.jit.freeze(torch.jit.trace(exported, example, check_trace=False))
        torch.jit.save(traced, folder / MODEL_FILES["torchscript"])
        axes = {"images": {0: "batch", 2: "height", 3: "width"}, "probabilities": {0: "batch", 2: "height", 3: "width"},
                "disagreement": {0: "batch", 1: "height", 2: "width"}}
        torch.onnx.export(exported, (example,), folder / MODEL_FILES["onnx"], dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["images"], output_names=OUTPUTS, dynamic_axes=axes)
    manifest["sha256"] = {name: _sha256(folder / name) for name in MODEL_FILES.values()}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    _check_export(module, folder, manifest)
    return folder


def _check_export(module: EnsembleModule, folder: Path, manifest: dict) -> None:
    """Both exported networks must reproduce the eager module on two random tiles; where they also do on two
    larger images, the bundle takes any size (any_size), else tiles of its own size only (with a warning)."""
    tile = manifest["tile"]
    expected, tiles = _eager_on_random(module, manifest["in_channels"], tile)
    if expected.shape[1] != len(manifest["classes"]):
        (folder / MANIFEST).unlink()
        raise BundleError(f"export_bundle: the manifest lists {len(manifest['classes'])} classes but the ensemble "
                          f"outputs {expected.shape[1]}; give it the classes the members were trained on")
    for runtime in MODEL_FILES:
        difference = float(np.abs(load_bundle(folder, runtime).predict(tiles) - expected).max())
        if not difference <= EXPORT_TOLERANCE:
            (folder / MANIFEST).unlink()  # a folder without a manifest cannot be mistaken for a working bundle
            raise BundleError(f"export_bundle: {folder / MODEL_FILES[runtime]} differs from the eager ensemble by "
                              f"{difference:.2g} (tolerance {EXPORT_TOLERANCE}); a member does not trace faithfully, "
                              "leave it out of the ensemble or report the architecture")
    larger = [side + extra for side, extra in zip(tile, ANY_SIZE_CHECK)]
    failure = _any_size_failure(module, folder, manifest["in_channels"], larger)
    if failure:
        manifest["any_size"] = False
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        warnings.warn(f"export_bundle: {failure} at {larger[0]}x{larger[1]}, so {folder} takes tiles of "
                      f"{tile[0]}x{tile[1]} only (any_size false): `segtune predict` tiles every image", stacklevel=3)


def _eager_on_random(module: EnsembleModule, channels: int, size) -> tuple[np.ndarray, np.ndarray]:
    """The eager module's probabilities on two seeded random images of `size`, and the images."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand((2, channels, *size), generator=generator) * 255
    with torch.no_grad():
        return module(images).numpy(), images.numpy()


def _any_size_failure(module: EnsembleModule, folder: Path, channels: int, size) -> str | None:
    """Why the exported networks cannot take images of `size` (larger than the traced tile), or None."""
    expected, images = _eager_on_random(module, channels, size)
    for runtime in MODEL_FILES:
        try:
            probs = load_bundle(folder, runtime).predict(images)
        except Exception as error:  # noqa: BLE001 - whatever the runtime raises, the network is not size-free
            return f"the {runtime} network fails ({str(error).splitlines()[0][:200]})"
        if probs.shape != expected.shape:
            return f"the {runtime} network outputs {probs.shape[2]}x{probs.shape[3]} for an input"
        difference = float(np.abs(probs - expected).max())
        if not difference <= EXPORT_TOLERANCE:
            return f"the {runtime} network differs from the eager ensemble by {difference:.2g}"
    return None


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
        forward_both, device = loader(file, device)
    except Exception as error:  # noqa: BLE001 - any failure of the runtime to open the file means the same to the user
        raise BundleError(f"{file} cannot be loaded by {runtime} ({str(error).splitlines()[0][:300]}); the file is "
                          "corrupt or incomplete: copy the bundle again or re-export it") from error
    both = "disagreement" in manifest["outputs"]
    return Bundle(folder, manifest, runtime, device, lambda batch: forward_both(batch, False)[0],
                  (lambda batch: forward_both(batch, True)) if both else None)


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
    if version in (1, 2):  # traced for their tile only, with the probabilities as their one output
        manifest = {"any_size": False, "outputs": OUTPUTS[:1], **manifest}
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
    if not isinstance(manifest.get("any_size"), bool):
        problems.append("needs 'any_size' true or false (whether the networks take images of any size)")
    if manifest.get("outputs") not in (OUTPUTS, OUTPUTS[:1]):
        problems.append(f"needs 'outputs' {OUTPUTS} or {OUTPUTS[:1]}")
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

    def forward(batch: np.ndarray, both: bool) -> list[np.ndarray]:
        """[probabilities] or, with both, [probabilities, disagreement]; version 1 and 2 networks return a tensor."""
        with torch.inference_mode():
            outputs = network(torch.from_numpy(batch).to(device))
            if both and not isinstance(outputs, tuple):
                raise BundleError(f"{file} has no disagreement output although its manifest lists one; restore the "
                                  "bundle's own manifest.json or re-export the bundle")
            outputs = outputs[:2 if both else 1] if isinstance(outputs, tuple) else (outputs,)
            return [output.float().cpu().numpy() for output in outputs]
    return forward, device


def _load_onnx(file: Path, device: str):
    device = _resolve_device(device, "CUDAExecutionProvider" in onnxruntime.get_available_providers(), file)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    session = onnxruntime.InferenceSession(str(file), providers=providers)
    name, outputs = session.get_inputs()[0].name, [output.name for output in session.get_outputs()]

    def forward(batch: np.ndarray, both: bool) -> list[np.ndarray]:
        """[probabilities] or, with both, [probabilities, disagreement]."""
        if both and len(outputs) < 2:
            raise BundleError(f"{file} has no disagreement output although its manifest lists one; restore the "
                              "bundle's own manifest.json or re-export the bundle")
        return session.run(outputs[:2 if both else 1], {name: batch})
    return forward, device


def _resolve_device(device: str, cuda_available: bool, file: Path) -> str:
    if device == "cuda" and not cuda_available:
        warnings.warn(f"device cuda asked for {file.name} but this runtime sees no GPU; running on the CPU")
    return "cuda" if device in ("cuda", "auto") and cuda_available else "cpu"
