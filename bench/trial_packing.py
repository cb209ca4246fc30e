"""Trials packed per GPU against aggregate training throughput (the search config's gpus_per_trial).

    python bench/trial_packing.py                       # on a GPU machine: 1, 2, 4 trials per GPU
    python bench/trial_packing.py --packing 1,2,4 --precision bf16,fp32
    python bench/trial_packing.py --cpu --packing 1,2   # the same measurement on CPU cores (no GPU)

N identical trials (one fixed config, synthetic data, fixed steps per epoch) run at once, each with 1/N
of the GPU (or of the CPUs), as a search with gpus_per_trial = 1/N would run them. Reports the wall time
and the aggregate training images per second over all N trials, and its ratio to one trial per device.
The first epoch (cuDNN autotuning, allocator warm-up) is left out of the timing; epoch times include
each trial's validation pass over 6 images.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray  # noqa: E402
import torch  # noqa: E402
from ray import tune  # noqa: E402

from search import load_config  # noqa: E402
from search.fixed import fixed_trial_params  # noqa: E402
from segtune.data import make_splits, make_synthetic  # noqa: E402
from trainables import train_segmentation  # noqa: E402

TRIAL = {"architecture": "Unet", "encoder": "tu-resnet18", "encoder_depth": 5, "loss": "cross_entropy_dice",
         "optimizer": "adamw", "lr": 1e-3, "batch_size": 16}


def measure(packing: int, mixed_precision: bool, args, data, splits) -> dict:
    cfg = load_config(None, {"crop": [args.crop, args.crop], "max_epochs": args.epochs, "grace_period": 1,
                             "steps_per_epoch": args.steps, "mixed_precision": mixed_precision,
                             "channels_last": mixed_precision, "cpus_per_trial": args.cpus_per_trial,
                             "gpus_per_trial": 0 if args.cpu else 1 / packing})
    fixed = fixed_trial_params(cfg, data, splits).as_dict()
    cpus = args.cpus_per_trial if not args.cpu else max(1, args.total_cpus // packing)
    trainable = tune.with_resources(tune.with_parameters(train_segmentation, data=data, splits=splits, fixed=fixed),
                                    {"cpu": cpus, "gpu": cfg.gpus_per_trial})
    tuner = tune.Tuner(trainable, param_space={**TRIAL, "batch_size": args.batch_size},
                       tune_config=tune.TuneConfig(num_samples=packing, max_concurrent_trials=packing),
                       run_config=tune.RunConfig(storage_path=args.storage, name=f"pack{packing}_{mixed_precision}",
                                                 verbose=0))
    results = tuner.fit()
    timed = []  # per trial: seconds of the epochs after the first
    for result in results:
        if result.error:
            raise RuntimeError(f"a trial failed at packing {packing}: {result.error}")
        frame = result.metrics_dataframe
        timed.append(float(frame["time_this_iter_s"].iloc[1:].sum()))
    images = packing * (args.epochs - 1) * args.steps * args.batch_size
    return {"packing": packing, "precision": "bf16/fp16" if mixed_precision else "fp32",
            "slowest_trial_s": max(timed), "images_per_s": images / max(timed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packing", default="1,2,4", help="trials per device to compare (default 1,2,4)")
    parser.add_argument("--precision", default="mixed,fp32", help="mixed and/or fp32 (default both)")
    parser.add_argument("--cpu", action="store_true", help="pack trials on CPU cores instead of a GPU")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=40, help="batches per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial; the first is warm-up, not timed")
    parser.add_argument("--cpus-per-trial", type=int, default=2)
    parser.add_argument("--storage", default="/tmp/segtune_bench_packing")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("no GPU here: run on a GPU machine, or pass --cpu to pack trials on CPU cores")
    args.total_cpus = os.cpu_count()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    # enough images for --steps full batches an epoch (with 64 images an epoch stopped at 3 batches of 16, while
    # the images/s below counted 40)
    data = make_synthetic(count=max(16, math.ceil(args.steps * args.batch_size / 0.85)), height=args.crop + 32,
                          width=args.crop + 32)
    splits = make_splits(data, 0.1, 0.0, seed=0)
    if len(splits["train"]) < args.steps * args.batch_size:
        raise SystemExit(f"{len(splits['train'])} training images give fewer than --steps {args.steps} batches")
    splits = {**splits, "val": splits["val"][:6]}  # the timed epochs include validation: keep it to 6 images
    device = "CPU" if args.cpu else torch.cuda.get_device_name(0)
    print(f"device: {device}; crop {args.crop}, batch {args.batch_size}, {args.steps} steps x {args.epochs - 1} timed epochs")
    print(f"{'per device':>10} {'precision':>10} {'slowest trial s':>16} {'images/s':>10} {'vs 1 per device':>16}")
    for precision in ["fp32"] if args.cpu else args.precision.split(","):
        baseline = None
        for packing in (int(p) for p in args.packing.split(",")):
            row = measure(packing, precision == "mixed" and not args.cpu, args, data, splits)
            baseline = baseline or row["images_per_s"]
            print(f"{row['packing']:>10} {row['precision']:>10} {row['slowest_trial_s']:>16.1f} "
                  f"{row['images_per_s']:>10.1f} {row['images_per_s'] / baseline:>15.2f}x", flush=True)


if __name__ == "__main__":
    main()
