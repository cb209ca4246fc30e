"""A trial's training throughput against a bare PyTorch loop: same model, data, crops, batches, loss and threads.

    python bench/trial_overhead.py                                   # synthetic data, 64x64 crops, batch 16
    python bench/trial_overhead.py --data ../shared/datasets/cwfid --resize 242 324 --crop 192 256 \\
        --batch-size 8 --encoders tu-mobilenetv3_small_050,tu-resnet18
    python bench/trial_overhead.py --device cuda --threads 4 ...     # on a GPU (bf16 autocast, channels-last)

Three arms, each training --epochs epochs from the same seed, the first epoch warm-up and not timed:
    segtune  trainables.run_trial, the code a trial runs inside Ray, called directly; train_epoch's calls timed
    bare     a hand-written loop: a DataLoader over the same CropDataset (the same crops in the same order), the
             model from the same smp factory, F.cross_entropy, AdamW, zero_grad/backward/step, one sync per epoch
    ray      train_segmentation through Ray Tune, one trial with --threads CPUs, as a search runs it (what users
             run); train_epoch's calls timed inside the trial process (--no-ray leaves it out)
segtune and bare take turns epoch by epoch in one process (bare's epoch runs while run_trial reports; who goes first
alternates by repeat), so a background load hits both alike; the Ray trial runs between them. Images per second
count training epochs only (no validation, checkpoints or start-up), by the wall clock and per CPU-second of the
process; the second ignores what share of the CPUs a background load leaves (on a CPU with --threads 1 all the work
is in the process: no DataLoader workers). Ratios are arm/bare within a repeat, reported as median [min, max] over
repeats; ray/bare compares runs minutes apart, so by the wall clock it is the noisier one.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from ray import tune  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import trainables.trainable  # noqa: E402
from search import load_config  # noqa: E402
from search.cluster import start_ray  # noqa: E402
from search.fixed import fixed_trial_params  # noqa: E402
from segtune.data import CropDataset, load_dataset, make_splits, make_synthetic  # noqa: E402
from trainables import TrialConfig, build_model, run_trial, train_segmentation  # noqa: E402

ARMS = ("segtune", "bare", "ray")


def sampled_params(args, encoder: str) -> dict:
    """What a search would sample: everything the loops share that the data does not fix."""
    return {"architecture": "Unet", "encoder": encoder, "encoder_depth": args.depth, "loss": "cross_entropy",
            "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": args.batch_size}


def prepare(args):
    """The search config's view of the data: (search config, data, splits with one val image)."""
    cfg = load_config(None, {"data": args.data, "resize": args.resize, "crop": args.crop, "max_epochs": args.epochs,
                             "steps_per_epoch": args.steps, "cpus_per_trial": args.threads,
                             "mixed_precision": args.precision == "mixed", "channels_last": args.precision == "mixed",
                             "gpus_per_trial": 1 if args.device == "cuda" else 0, "seed": 0})
    if args.data == "synthetic":
        side = max(args.crop) + 32
        data = make_synthetic(count=args.synthetic_images, height=side, width=side)
    else:
        data = load_dataset(cfg.data, resize=cfg.resize)
    splits = make_splits(data, cfg.val_fraction, cfg.test_fraction, cfg.splits_seed)
    return cfg, data, {**splits, "val": splits["val"][:1]}  # validation is not timed: keep it short


def epoch_images(trial: TrialConfig, train_images: int) -> int:
    """Images one epoch trains on: full batches (drop_last) up to steps_per_epoch."""
    if train_images <= trial.batch_size:
        return train_images
    batches = train_images // trial.batch_size
    return min(batches, trial.steps_per_epoch or batches) * trial.batch_size


def synchronise() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def clocks() -> tuple[float, float]:
    """(wall clock, CPU time of this process): the second counts only work done here, whatever else the machine
    runs (with --threads 1 there are no DataLoader workers, so all of a CPU trial's work)."""
    synchronise()
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    now = clocks()
    return now[0] - start[0], now[1] - start[1]


@contextlib.contextmanager
def timed_train_epochs(record):
    """trainables.trainable's train_epoch, each call timed into record((wall seconds, CPU seconds))."""
    original = trainables.trainable.train_epoch

    def timed(*args, **kwargs):
        started = clocks()
        loss = original(*args, **kwargs)
        record(since(started))
        return loss

    with mock.patch.object(trainables.trainable, "train_epoch", timed):
        yield


def paired_run(trial: TrialConfig, data, splits, args, bare_first: bool) -> tuple[list, list]:
    """(segtune's epoch times, bare's epoch times): run_trial, with one bare epoch run at each of its reports."""
    segtune_seconds: list[tuple[float, float]] = []
    bare = bare_epochs(trial, data, splits, args)
    bare_seconds: list[tuple[float, float]] = [next(bare)] if bare_first else []

    def report(result, state):
        if len(bare_seconds) < trial.max_epochs:
            bare_seconds.append(next(bare))

    with timed_train_epochs(segtune_seconds.append):
        run_trial(trial, data, splits, report)
    return segtune_seconds, bare_seconds


def ray_arm(trial: TrialConfig, data, splits, args, label: str) -> list[tuple[float, float]]:
    """One Tune trial of train_segmentation; the trial process appends each epoch's times to a file."""
    times_file = args.out / f"{label}.jsonl"
    sampled = sampled_params(args, trial.encoder)
    fixed = {k: v for k, v in trial.to_dict().items() if k not in sampled}

    def timed_trial(config, data, splits, fixed):
        def record(seconds):
            with open(times_file, "a") as file:
                file.write(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}) + "\n")
        with timed_train_epochs(record):
            train_segmentation(config, data, splits, fixed)

    resources = {"cpu": args.threads, "gpu": 1 if args.device == "cuda" else 0}
    trainable = tune.with_resources(tune.with_parameters(timed_trial, data=data, splits=splits, fixed=fixed), resources)
    results = tune.Tuner(trainable, param_space=sampled, tune_config=tune.TuneConfig(num_samples=1),
                         run_config=tune.RunConfig(name=label, storage_path=str(args.out / "ray"), verbose=0,
                                                   checkpoint_config=tune.CheckpointConfig(num_to_keep=1))).fit()
    if results[0].error:
        raise RuntimeError(f"the Ray trial failed: {results[0].error}")
    rows = [json.loads(line) for line in times_file.read_text().splitlines()]
    args.ray_threads = rows[0]["threads"]
    return [tuple(row["seconds"]) for row in rows]


def bare_epochs(trial: TrialConfig, data, splits, args):
    """The reference, what one would write by hand for the same training: yields each epoch's times."""
    device = torch.device(args.device)
    mixed = device.type == "cuda" and args.precision == "mixed"
    if mixed and not torch.cuda.is_bf16_supported():
        raise SystemExit("the bare loop uses bf16 autocast; this GPU has no bf16: pass --precision fp32")
    torch.manual_seed(trial.seed)
    model = build_model(trial).to(device)
    if mixed:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=trial.lr, weight_decay=trial.weight_decay)
    train_set = CropDataset(data, splits["train"], trial.crop, trial.mean, trial.std, trial.seed, trial.ignore_index)
    for epoch in range(1, trial.max_epochs + 1):
        started = clocks()
        train_set.epoch = epoch
        loader = DataLoader(train_set, batch_size=trial.batch_size, shuffle=True,
                            drop_last=len(train_set) > trial.batch_size, num_workers=trial.num_workers,
                            generator=torch.Generator().manual_seed(trial.seed * 1000 + epoch),
                            pin_memory=device.type == "cuda")
        model.train()
        for images, masks in itertools.islice(loader, trial.steps_per_epoch):
            images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
            if mixed:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
                logits = model(images)
            loss = F.cross_entropy(logits.float(), masks, ignore_index=trial.ignore_index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        yield since(started)


def spread(values: list[float], digits: int = 3) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def measure(encoder: str, cfg, data, splits, args) -> dict[str, dict[str, list[float]]]:
    """Images per second of each arm, by the wall clock and by CPU time, one value per repeat."""
    fixed = fixed_trial_params(cfg, data, splits).as_dict()
    trial = TrialConfig.from_dict({**fixed, **sampled_params(args, encoder)})
    images = epoch_images(trial, len(splits["train"])) * (trial.max_epochs - 1)
    speed = {arm: {"wall": [], "cpu": []} for arm in ARMS if arm != "ray" or args.ray}
    for repeat in range(args.repeats):
        runs = dict(zip(("segtune", "bare"), paired_run(trial, data, splits, args, bare_first=repeat % 2 == 1)))
        if args.ray:
            runs["ray"] = ray_arm(trial, data, splits, args, f"{encoder}_ray_{repeat}")
        for arm, times in runs.items():
            if len(times) != trial.max_epochs:
                raise RuntimeError(f"arm {arm} trained {len(times)} epochs, not {trial.max_epochs}")
            speed[arm]["wall"].append(images / sum(wall for wall, _ in times[1:]))
            speed[arm]["cpu"].append(images / sum(cpu for _, cpu in times[1:]))
        print(f"  repeat {repeat}: " + ", ".join(f"{arm} {speed[arm]['wall'][-1]:.2f} img/s" for arm in speed), flush=True)
    return speed


def report(encoder: str, speed: dict[str, dict[str, list[float]]]) -> None:
    print(f"{encoder}: median [min, max] over repeats of images per wall-clock second; per CPU-second of the process")
    for arm, values in speed.items():
        print(f"  {arm:<8} {spread(values['wall'], 2)}; {spread(values['cpu'], 2)}")
    for arm in (a for a in speed if a != "bare"):
        for clock, label in (("wall", "wall clock"), ("cpu", "CPU time")):
            ratios = [a / b for a, b in zip(speed[arm][clock], speed["bare"][clock])]
            print(f"  {arm}/bare ratio ({label}) {spread(ratios)}")


def add_workload_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """The training both this bench and bench/cuda_paths.py measure: data, crops, model, batches, epochs, device."""
    parser.add_argument("--data", default="synthetic", help="'synthetic' or a dataset folder (default synthetic)")
    parser.add_argument("--synthetic-images", type=int, default=160, help="images of the synthetic data (default 160)")
    parser.add_argument("--resize", type=int, nargs=2, metavar=("H", "W"), help="resize images when read")
    parser.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), default=[64, 64])
    parser.add_argument("--encoders", default="tu-mobilenetv3_small_050", help="comma-separated smp encoders")
    parser.add_argument("--depth", type=int, default=5, help="encoder depth (default 5)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None, help="batches per epoch (default: one pass)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is not timed (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads = the trial's CPUs (default 1)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=Path(out))


def check_workload(parser: argparse.ArgumentParser, args) -> None:
    if args.epochs < 2:
        parser.error("--epochs must be >= 2: the first epoch is warm-up")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    if args.device == "cpu" and torch.cuda.is_available():
        raise SystemExit("--device cpu on a machine with CUDA: a trial trains on the GPU there; hide it "
                         "(CUDA_VISIBLE_DEVICES=) to measure the CPU")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workload_arguments(parser, "/tmp/segtune_trial_overhead")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ray", dest="ray", action="store_false", help="leave out the Ray arm")
    parser.add_argument("--precision", default="mixed", choices=["mixed", "fp32"], help="on cuda (default mixed)")
    args = parser.parse_args()
    check_workload(parser, args)
    for stale in args.out.glob("*.jsonl"):
        stale.unlink()
    cfg, data, splits = prepare(args)
    if args.ray:
        start_ray(cfg)
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    print(f"{where}, {args.threads} thread(s); data {args.data}: {len(splits['train'])} training images, crop "
          f"{args.crop[0]}x{args.crop[1]}, batch {args.batch_size}, depth {args.depth}, {args.epochs - 1} timed epochs "
          f"after 1 warm-up, {args.repeats} repeats")
    for encoder in args.encoders.split(","):
        speed = measure(encoder, cfg, data, splits, args)
        report(encoder, speed)
    if args.ray:
        print(f"torch threads in the Ray trial process: {args.ray_threads}")


if __name__ == "__main__":
    main()
