"""Tiny ensembles for the bundle tests: two depth-3 members with seeded random weights, and their manifests."""

import json
from pathlib import Path

import numpy as np
import torch

from ensembles.combine import EnsembleModule, PixelLogistic, WeightedMean
from trainables.config import TrialConfig
from trainables.model import build_model

PALETTE = [[0, 0, 0], [255, 128, 0], [40, 200, 90]]


def tiny_ensemble(combiner: str, channels: int) -> tuple[EnsembleModule, list[TrialConfig]]:
    """Two 3-class members (resnet18 and mobilenet) and a combiner, in eval mode."""
    torch.manual_seed(0)
    configs = [TrialConfig(encoder=encoder, in_channels=channels, num_classes=3, mean=(0.4,) * channels,
                           std=(0.3,) * channels) for encoder in ("resnet18", "tu-mobilenetv3_small_050")]
    members = [build_model(cfg) for cfg in configs]
    if combiner == "weighted_mean":
        head = WeightedMean([0.7, 0.3])
    else:
        head = PixelLogistic(2, 3)
        with torch.no_grad():  # away from its geometric-mean start, like a fitted combiner
            head.linear.weight.add_(0.3 * torch.randn_like(head.linear.weight))
    return EnsembleModule(members, head, configs[0].mean, configs[0].std).eval(), configs


def manifest_for(configs: list[TrialConfig], combiner: str, tile: list[int], overlap: float = 0.25) -> dict:
    """The manifest of a bundle whose members read images at their own size (input_scale null)."""
    channels = configs[0].in_channels
    return {"classes": ["background", "crop", "weed"], "palette": PALETTE, "in_channels": channels,
            "mean": list(configs[0].mean), "std": list(configs[0].std), "tile": tile, "overlap": overlap,
            "input_scale": None,
            "members": [{"trial_id": f"t{i}", "config": c.to_dict(), "val_miou": 0.5} for i, c in enumerate(configs)],
            "combiner": {"kind": combiner}, "scores": {"val_miou": 0.6}}


def edit_manifest(folder: Path, change) -> None:
    """Apply change(manifest) to a bundle's manifest.json in place (the manifest is not checksummed)."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def eager(module: EnsembleModule, image: np.ndarray) -> np.ndarray:
    """The eager module's probabilities (K, H, W) for one (H, W, C) uint8 image with sides that are multiples of 32."""
    with torch.no_grad():
        return module(torch.from_numpy(image).permute(2, 0, 1)[None].float())[0].numpy()


def random_image(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish random uint8 image, so members see structure rather than pure noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, channels)).repeat(8, 0).repeat(8, 1)
    return np.clip(coarse[:height, :width] + rng.integers(-20, 21, (height, width, channels)), 0, 255).astype(np.uint8)
