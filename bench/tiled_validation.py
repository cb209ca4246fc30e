"""Peak memory and time of validating one large image whole against in tiles (trainables/tiled.py).

    python bench/tiled_validation.py --size 1536 2048 --crop 256 256 --batch-size 4 --encoder tu-resnet18

Each arm runs in a fresh process (peak RSS is per process): the model is built, then `evaluate` scores one
synthetic RGB image of --size. `tiled` is a trial whose training step holds --batch-size crops of --crop, so
validation cuts the image into those tiles; `whole` is the same model validating the image in one pass (as
every image was validated before tiling). Printed: the process's peak RSS after building the model, after
validation, the difference (what validation added) and the wall time, and the tiled/whole ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_arm(arm: str, size: list[int], crop: list[int], batch_size: int, encoder: str) -> dict:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from segtune.data import SegmentationData, WholeImageDataset
    from trainables import TrialConfig, build_model
    from trainables.device import Compute
    from trainables.loop import evaluate
    from trainables.losses import build_loss
    torch.set_num_threads(1)  # as a cpus_per_trial: 1 trial runs
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 3, size, dtype=np.uint8)
    data = SegmentationData(names=["photo"], images=[(rng.random((*size, 3)) * 255).astype(np.uint8)], masks=[mask],
                            classes=("a", "b", "c"))
    trial_crop, trial_batch = (crop, batch_size) if arm == "tiled" else (size, 1)
    cfg = TrialConfig(architecture="Unet", encoder=encoder, encoder_depth=5, num_classes=3, crop=tuple(trial_crop),
                      batch_size=trial_batch, max_epochs=1, class_names=("a", "b", "c"))
    model = build_model(cfg)
    loader = DataLoader(WholeImageDataset(data, ["photo"], (0.5,) * 3, (0.25,) * 3), batch_size=1)
    before = peak_mb()
    started = time.perf_counter()
    scores = evaluate(model, loader, build_loss("cross_entropy", 255), cfg, Compute(torch.device("cpu")))
    return {"arm": arm, "model_mb": round(before), "peak_mb": round(peak_mb()), "added_mb": round(peak_mb() - before),
            "seconds": round(time.perf_counter() - started, 1), "val_miou": round(scores["val_miou"], 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=2, default=[1536, 2048], metavar=("H", "W"))
    parser.add_argument("--crop", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--encoder", default="tu-resnet18")
    parser.add_argument("--arm", choices=["tiled", "whole"], help=argparse.SUPPRESS)  # one arm, in a child process
    args = parser.parse_args(argv)
    if args.arm:
        print(json.dumps(run_arm(args.arm, args.size, args.crop, args.batch_size, args.encoder)))
        return 0
    rows = {}
    for arm in ("tiled", "whole"):
        command = [sys.executable, __file__, "--arm", arm, "--size", *map(str, args.size), "--crop",
                   *map(str, args.crop), "--batch-size", str(args.batch_size), "--encoder", args.encoder]
        rows[arm] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    print(f"{args.size[0]}x{args.size[1]} image, Unet {args.encoder}; tiles of {args.crop[0]}x{args.crop[1]}, "
          f"{args.batch_size} a pass")
    print("| arm | peak RSS after building the model (MB) | peak RSS after validation (MB) | added by validation (MB) "
          "| seconds | val mIoU |")
    print("|---|---|---|---|---|---|")
    for row in rows.values():
        print(f"| {row['arm']} | {row['model_mb']} | {row['peak_mb']} | {row['added_mb']} | {row['seconds']} "
              f"| {row['val_miou']} |")
    tiled, whole = rows["tiled"], rows["whole"]
    print(f"tiled / whole: memory added {tiled['added_mb'] / max(whole['added_mb'], 1):.3f}, "
          f"time {tiled['seconds'] / max(whole['seconds'], 0.1):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
