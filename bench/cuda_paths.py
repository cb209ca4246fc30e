"""The compute paths of trainables/device.py, each through one real trial (trainables.run_trial); part of
bench/gpu_check.sh.

    python bench/cuda_paths.py --crop 256 256 --steps 30             # on a GPU: the four paths below
    python bench/cuda_paths.py --share 0.25                          # a trial held to a quarter of the GPU's memory
    python bench/cuda_paths.py --device cpu --crop 64 64 --steps 2   # the same code on a CPU (autocast on the CPU)

Paths: fp32 (NCHW), bf16 autocast, bf16 + channels-last (what a trial on an Ampere or newer GPU uses), fp16 autocast
with loss scaling + channels-last (what a trial uses on a GPU without bf16). Each row: training images/s of the
epochs after the first, the last epoch's training loss (finite, or the path is broken) and the peak GPU memory.
--share F runs one trial with gpu_fraction F, as a search packing 1/F trials per GPU does, in a process of its own
(the cap is per process), then checks that the trial's peak stayed in the share and that an allocation beyond the
share is refused. Every result line starts with ROW and is tab-separated (check, setting, result).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import trainables.trainable  # noqa: E402
from search.fixed import fixed_trial_params  # noqa: E402
from segtune import names  # noqa: E402
from trainables import TrialConfig, run_trial  # noqa: E402
from trainables.device import Compute  # noqa: E402
from trial_overhead import add_workload_arguments, check_workload, epoch_images, prepare, sampled_params  # noqa: E402
from trial_overhead import timed_train_epochs  # noqa: E402

PATHS = {"fp32": (None, False), "bf16": (torch.bfloat16, False), "bf16+channels_last": (torch.bfloat16, True),
         "fp16+channels_last (loss scaling)": (torch.float16, True)}
GIB = 2 ** 30


def row(check: str, setting: str, result: str) -> None:
    print(f"ROW\t{check}\t{setting}\t{result}", flush=True)


def train(trial: TrialConfig, data, splits, compute: Compute | None = None) -> tuple[list, list[float]]:
    """((wall, CPU) seconds of each epoch's training, each epoch's training loss) of one trial; compute None: the
    trial's own."""
    seconds, losses = [], []
    own = contextlib.nullcontext() if compute is None else mock.patch.object(trainables.trainable, "trial_compute",
                                                                             lambda *args: compute)
    with own, timed_train_epochs(seconds.append):
        run_trial(trial, data, splits, lambda result, state: losses.append(result[names.TRAIN_LOSS]))
    return seconds, losses


def measure_paths(trial: TrialConfig, data, splits, args) -> None:
    device = torch.device(args.device)
    images = epoch_images(trial, len(splits["train"])) * (trial.max_epochs - 1)
    baseline = None
    for name, (amp, channels_last) in PATHS.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds, losses = train(trial, data, splits, Compute(device, amp, channels_last))
        speed = images / sum(wall for wall, _ in seconds[1:])
        baseline = baseline or speed
        peak = f", peak {torch.cuda.max_memory_allocated() / GIB:.2f} GiB" if device.type == "cuda" else ""
        loss = "finite" if all(map(torch.isfinite, torch.tensor(losses))) else "NOT FINITE"
        row("compute path", name, f"{speed:.1f} img/s ({speed / baseline:.2f}x fp32), loss {losses[-1]:.3f} {loss}{peak}")


def check_share(trial: TrialConfig, data, splits, share: float) -> None:
    """A packed trial (gpu_fraction = share) through its own trial_compute, then allocations around the share."""
    if not torch.cuda.is_available():
        row("memory share", f"{share:g} of the GPU", "skipped: no CUDA device")
        return
    trial = TrialConfig.from_dict({**trial.to_dict(), "gpu_fraction": share})
    train(trial, data, splits)
    total = torch.cuda.get_device_properties(0).total_memory
    peak = torch.cuda.max_memory_reserved()
    torch.cuda.empty_cache()
    within = _allocates(int(total * share * 0.8))
    beyond = _allocates(int(total * share * 1.2))
    held = peak <= total * share and within and not beyond
    row("memory share", f"{share:g} of {total / GIB:.0f} GiB",
        f"{'held' if held else 'NOT HELD'}: trial peak {peak / GIB:.2f} GiB of {total * share / GIB:.1f}; "
        f"0.8x share allocated: {'yes' if within else 'no'}; 1.2x share refused: {'yes' if not beyond else 'no'}")


def _allocates(size: int) -> bool:
    try:
        block = torch.empty(size, dtype=torch.uint8, device="cuda")
    except torch.OutOfMemoryError:
        return False
    del block
    torch.cuda.empty_cache()
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workload_arguments(parser, "/tmp/segtune_cuda_paths")
    parser.add_argument("--share", type=float, default=None, help="check one trial held to this share of the GPU")
    args = parser.parse_args()
    check_workload(parser, args)
    args.precision = "mixed"  # the trial config's default; each path sets its own Compute
    cfg, data, splits = prepare(args)
    fixed = fixed_trial_params(cfg, data, splits).as_dict()
    trial = TrialConfig.from_dict({**fixed, **sampled_params(args, args.encoders.split(",")[0])})
    if args.share is not None:
        check_share(trial, data, splits, args.share)
    else:
        measure_paths(trial, data, splits, args)


if __name__ == "__main__":
    main()
