"""nnU-Net v2 as the peer: its own plan for a segtune config's data, trained with a segtune budget, scored by segtune.

    python bench/nnunet_peer.py spaces/configs/crop_weed.yaml --seeds 0,1,2 --budget-epochs 32 \
        --out bench_results/nnunet_cwfid [--set '{max_epochs: 8}']

Needs nnunetv2 2.8.1 (the `bench` extra), which wants timm<1.0.23 where segtune pins timm 1.0.31: it gets an
environment of its own that sees .venv's packages and shadows only timm (1.0.22; smp still imports with it):
    python3 -m venv ~/.venvs/nnunet
    echo "import site; site.addsitedir('$PWD/.venv/lib/python3.11/site-packages')" \
        > ~/.venvs/nnunet/lib/python3.11/site-packages/segtune_venv.pth
    ~/.venvs/nnunet/bin/pip install nnunetv2==2.8.1      # then run this script with ~/.venvs/nnunet/bin/python
1. Reads CONFIG as bench/compare_searchers.py does and carves the splits a new segtune search of it carves
   (same data, resize, exclusions, split_seed and near-duplicate groups).
2. Exports them to nnU-Net's raw format under --out/nnUNet_raw: train and val images in imagesTr/labelsTr,
   test images in imagesTs, dataset.json; the ignore label becomes nnU-Net's "ignore" (the highest label);
   splits_final.json's fold 0 is segtune's train/val.
3. nnU-Net's default planning and preprocessing (nnUNetPlans, 2d), then its 2d configuration trained on CPU
   with nnU-Net's network, patch and batch, for as many training images as a segtune run of --budget-epochs
   epochs sees (budget_epochs x train images), spread over --budget-epochs epochs. The final weights predict
   the val and test images as nnU-Net predicts (sliding window, mirroring), scored with segtune's mIoU (the
   config's exclude_from_mean left out of the mean, ignored pixels not counted).
Written as it goes, under --out:
    runs.csv    one row per seed: the schedule, val and test mIoU, per-class test IoU, seconds; a seed listed
                here is skipped when the command is run again
    summary.md  median [min, max] over seeds, as a row of bench/compare_searchers.py's table
    seeds/seedN nnU-Net's training output of each seed (log, progress plot, final checkpoint)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.compare_searchers import REFERENCE, compute_summary, format_summary, read_csv, write_csv  # noqa: E402

DATASET_ID = 501
"""nnU-Net dataset id of the export (501+: outside the ids nnU-Net's own conversions use)."""
DATASET_NAME = f"Dataset{DATASET_ID:03d}_segtune"
"""Each --out holds its own nnU-Net folders, so one name serves every export."""
CONFIGURATION = "2d"
PLANS = "nnUNetPlans"
"""nnU-Net's default planner's plans (ExperimentPlanner), the configuration papers compare with."""
STRATEGY = "nnU-Net 2d"
RUN_COLUMNS = ("seed", "budget_epochs", "train_images", "images_seen", "epochs", "iterations", "batch", "patch",
               "val_miou", "test_miou", "train_s", "wall_s")


# --------------------------------------------------------------------------- pure functions

def matched_iterations(budget_epochs: int, train_images: int, batch_size: int) -> int:
    """Training iterations that show nnU-Net at least the images a segtune run of budget_epochs epochs sees
    (one pass over the train split per epoch), less than one batch more."""
    return math.ceil(budget_epochs * train_images / batch_size)


def epoch_lengths(iterations: int, epochs: int) -> list[int]:
    """`iterations` spread over `epochs` epochs (fewer if there are fewer iterations), longer epochs first."""
    epochs = min(epochs, iterations)
    share, longer = divmod(iterations, epochs)
    return [share + 1] * longer + [share] * (epochs - longer)


def validation_iterations(val_images: int, batch_size: int) -> int:
    """Validation batches per epoch: about one patch per val image, as segtune scores each val image once an epoch
    (nnU-Net's 50 would cost more than the training on CPU; they only pick checkpoint_best, which is not used)."""
    return max(1, math.ceil(val_images / batch_size))


def nnunet_labels(classes: tuple[str, ...], has_ignore: bool) -> dict[str, int]:
    """dataset.json's labels: name -> value. nnU-Net needs label 0 called background and the ignore label last."""
    reserved = {"background", "ignore"}
    labels = {"background": 0}
    for index, name in enumerate(classes[1:], start=1):
        labels[f"{name}_{index}" if name in reserved or name in labels else name] = index
    if has_ignore:
        labels["ignore"] = len(classes)
    return labels


def nnunet_mask(mask: np.ndarray, ignore_index: int | None, num_classes: int) -> np.ndarray:
    """segtune's class-index mask with its ignore pixels moved to nnU-Net's ignore label (num_classes)."""
    out = mask.astype(np.uint8 if num_classes < 255 else np.uint16, copy=True)
    if ignore_index is not None:
        out[mask == ignore_index] = num_classes
    return out


def pending_seeds(seeds: list[int], runs: list[dict]) -> list[int]:
    """The seeds runs.csv does not list yet, in the order asked."""
    finished = {int(r["seed"]) for r in runs}
    return [s for s in seeds if s not in finished]


def summary_row(runs: list[dict]) -> dict:
    """A row for compare_searchers.format_summary: median and range over seeds of val and test mIoU."""
    def spread(prefix: str) -> dict:
        values = [float(r[f"{prefix}_miou"]) for r in runs if r[f"{prefix}_miou"] not in ("", None)]
        return {f"{prefix}_median": statistics.median(values) if values else None,
                f"{prefix}_min": min(values, default=None), f"{prefix}_max": max(values, default=None)}
    return {"strategy": STRATEGY, "reference": REFERENCE, "seeds": len(runs), **spread("val"), **spread("test"),
            "epochs_to_reference": None, "fraction_of_budget": None,
            **compute_summary({}, None, None)}  # nnU-Net's own loop reports no trial-seconds or pixels per epoch


# --------------------------------------------------------------------------- the segtune side

def export_dataset(data, splits: dict[str, list[str]], folder: Path) -> Path:
    """nnU-Net's raw format (2D PNGs for its NaturalImage2DIO): imagesTr/labelsTr = train + val, imagesTs = test."""
    from PIL import Image
    has_ignore = data.ignore_index is not None and any((m == data.ignore_index).any() for m in data.masks)
    index = data.index_of()
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        images = folder / ("imagesTs" if split == "test" else "imagesTr")
        for image_id in splits[split]:
            image = data.images[index[image_id]]
            Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(images / f"{image_id}_0000.png")
            if split != "test":
                mask = nnunet_mask(data.masks[index[image_id]], data.ignore_index if has_ignore else None,
                                   data.num_classes)
                Image.fromarray(mask).save(folder / "labelsTr" / f"{image_id}.png")
    channels = {"0": "gray"} if data.in_channels == 1 else {"0": "R", "1": "G", "2": "B"}
    dataset = {"channel_names": channels, "labels": nnunet_labels(data.classes, has_ignore),
               "numTraining": len(splits["train"]) + len(splits["val"]), "file_ending": ".png"}
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=1))
    return folder


def write_split_file(splits: dict[str, list[str]], preprocessed: Path) -> Path:
    """splits_final.json: one fold, segtune's train/val (nnU-Net then trains fold 0 on exactly those)."""
    path = preprocessed / "splits_final.json"
    path.write_text(json.dumps([{"train": splits["train"], "val": splits["val"]}], indent=1))
    return path


def score(predictions: dict[str, np.ndarray], data, exclude_from_mean: list[int]) -> tuple[float, list[float]]:
    """segtune's mIoU (one confusion matrix over all images) and per-class IoU of predicted class-index masks."""
    import torch

    from segtune import metrics
    index = data.index_of()
    matrix = torch.zeros(data.num_classes, data.num_classes, dtype=torch.long)
    for image_id, predicted in predictions.items():
        matrix += metrics.confusion_matrix(torch.from_numpy(data.masks[index[image_id]].astype(np.int64)),
                                           torch.from_numpy(predicted.astype(np.int64)), data.num_classes,
                                           data.ignore_index)
    return metrics.mean_iou(matrix.numpy(), tuple(exclude_from_mean)), metrics.iou_per_class(matrix.numpy()).tolist()


# --------------------------------------------------------------------------- the nnU-Net side

def nnunet_folders(out: Path) -> dict[str, Path]:
    return {name: out / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}


def set_nnunet_environment(out: Path) -> None:
    """nnU-Net reads its folders and process counts from the environment when first imported: set them before."""
    for name, folder in nnunet_folders(out).items():
        folder.mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(folder)
    os.environ.setdefault("nnUNet_n_proc_DA", "1")  # one augmentation worker (its planner refuses 0); 2 CPUs shared
    os.environ.setdefault("nnUNet_def_n_proc", "1")


def plan_and_preprocess(dataset_id: int) -> None:
    """nnU-Net's fingerprint (with its dataset integrity check), default plans, and 2d preprocessing."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                       preprocess)
    processes = int(os.environ["nnUNet_def_n_proc"])
    extract_fingerprints([dataset_id], num_processes=processes, check_dataset_integrity=True, clean=True)
    plan_experiments([dataset_id])
    preprocess([dataset_id], PLANS, (CONFIGURATION,), (processes,))


def budget_trainer_class():
    """nnUNetTrainer that runs a given list of epoch lengths (set .epoch_lengths before training) and counts steps."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    class nnUNetTrainerSegtuneBudget(nnUNetTrainer):
        epoch_lengths: tuple[int, ...] = ()
        steps_run = 0

        def on_train_epoch_start(self):
            super().on_train_epoch_start()
            self.num_iterations_per_epoch = self.epoch_lengths[self.current_epoch]  # run_training reads it next

        def train_step(self, batch: dict) -> dict:
            self.steps_run += 1
            return super().train_step(batch)

    return nnUNetTrainerSegtuneBudget


def build_trainer(preprocessed: Path, budget_epochs: int, train_images: int, val_images: int):
    """The budget trainer for fold 0 on CPU, its schedule set from the plan's batch size."""
    import torch
    plans = json.loads((preprocessed / f"{PLANS}.json").read_text())
    batch = plans["configurations"][CONFIGURATION]["batch_size"]
    lengths = epoch_lengths(matched_iterations(budget_epochs, train_images, batch), budget_epochs)
    trainer = budget_trainer_class()(plans={**plans, "continue_training": False}, configuration=CONFIGURATION,
                                     fold=0, dataset_json=json.loads((preprocessed / "dataset.json").read_text()),
                                     device=torch.device("cpu"))
    trainer.epoch_lengths, trainer.num_epochs = tuple(lengths), len(lengths)
    trainer.num_val_iterations_per_epoch = validation_iterations(val_images, batch)
    return trainer


def predict(trainer, image_files: dict[str, Path]) -> dict[str, np.ndarray]:
    """Class-index masks of the trained network, predicted as nnU-Net predicts (read by its own image reader)."""
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    trainer.set_deep_supervision_enabled(False)
    trainer.network.eval()
    predictor = nnUNetPredictor(device=trainer.device, allow_tqdm=False)
    # manual: nnU-Net's lookup of a trainer class by name searches its own package only
    predictor.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager,
                                    [trainer.network.state_dict()], trainer.dataset_json, type(trainer).__name__,
                                    trainer.inference_allowed_mirroring_axes)
    reader, masks = NaturalImage2DIO(), {}
    for image_id, path in image_files.items():
        image, properties = reader.read_images([str(path)])
        masks[image_id] = np.asarray(predictor.predict_single_npy_array(image, properties)).reshape(
            image.shape[-2:])
    return masks


def run_seed(seed: int, out: Path, data, splits: dict[str, list[str]], exclude: list[int], budget_epochs: int) -> dict:
    """Train, predict and score one seed; nnU-Net's output folder ends as --out/seeds/seed<N>."""
    import torch
    raw, preprocessed, results = (folder / DATASET_NAME for folder in nnunet_folders(out).values())
    shutil.rmtree(results, ignore_errors=True)  # a half-done seed starts over
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # the network's initialisation; nnU-Net does not seed its augmentation worker
    started = time.monotonic()
    trainer = build_trainer(preprocessed, budget_epochs, len(splits["train"]), len(splits["val"]))
    trainer.run_training()
    train_s = time.monotonic() - started
    val_miou, _ = score(predict(trainer, {i: raw / "imagesTr" / f"{i}_0000.png" for i in splits["val"]}), data, exclude)
    test_miou, ious = score(predict(trainer, {i: raw / "imagesTs" / f"{i}_0000.png" for i in splits["test"]}), data,
                            exclude)
    seed_folder = out / "seeds" / f"seed{seed}"
    shutil.rmtree(seed_folder, ignore_errors=True)
    seed_folder.parent.mkdir(exist_ok=True)
    shutil.move(trainer.output_folder_base, seed_folder)
    return {"seed": seed, "budget_epochs": budget_epochs, "train_images": len(splits["train"]),
            "images_seen": trainer.steps_run * trainer.batch_size, "epochs": trainer.num_epochs,
            "iterations": trainer.steps_run, "batch": trainer.batch_size,
            "patch": "x".join(map(str, trainer.configuration_manager.patch_size)), "val_miou": round(val_miou, 4),
            "test_miou": round(test_miou, 4), **{f"iou_{c}": round(v, 4) for c, v in zip(data.classes, ious)},
            "train_s": round(train_s, 1), "wall_s": round(time.monotonic() - started, 1)}


# --------------------------------------------------------------------------- driving

def run_pending(seeds: list[int], runs_path: Path, columns: tuple[str, ...], run: Callable[[int], dict]) -> list[dict]:
    """Run the seeds runs.csv lacks, rewriting it after each so an interrupted command resumes at the next seed."""
    runs = read_csv(runs_path)
    for seed in pending_seeds(seeds, runs):
        runs.append(run(seed))
        write_csv(runs_path, columns, runs)
        print(f"{STRATEGY} seed {seed}: test mIoU {runs[-1]['test_miou']} after {runs[-1]['iterations']} iterations "
              f"of batch {runs[-1]['batch']} in {runs[-1]['wall_s']} s", flush=True)
    return runs


def write_summary(out: Path, runs: list[dict], budget_epochs: int) -> str:
    wall = statistics.median(float(r["wall_s"]) for r in runs) if runs else 0.0
    first = runs[0] if runs else {}
    notes = [f"nnU-Net v2 ({PLANS}, {CONFIGURATION}) on segtune's splits, trained on CPU: "
             f"{first.get('iterations', '-')} iterations of batch {first.get('batch', '-')} (patch "
             f"{first.get('patch', '-')}) = {first.get('images_seen', '-')} images, for {budget_epochs} epochs x "
             f"{first.get('train_images', '-')} train images; median wall time {wall:.0f} s",
             "val mIoU: the final weights on the val split (nnU-Net keeps no best-of-epochs pick here), "
             "scored like the test split with segtune's metric"]
    text = format_summary([summary_row(runs)], budget_epochs, notes)
    (out / "summary.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a segtune search config (YAML)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget-epochs", type=int, required=True,
                        help="segtune epochs to match: nnU-Net sees budget x train images")
    parser.add_argument("--out", type=Path, default=Path("bench_results/nnunet_peer"))
    parser.add_argument("--set", default=None, help="more search options as a YAML mapping, e.g. '{resize: [64, 64]}'")
    args = parser.parse_args(argv)
    if args.budget_epochs < 1:
        parser.error("--budget-epochs: must be >= 1 epoch")

    import yaml
    from search import load_config
    from search.config import save_config
    from search.fixed import fixed_trial_params
    cfg = load_config(args.config, yaml.safe_load(args.set) if args.set else {})
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / "runs.csv"
    budgets = {int(r["budget_epochs"]) for r in read_csv(runs_path)} - {args.budget_epochs}
    if budgets:
        parser.error(f"--out {out} holds runs of --budget-epochs {sorted(budgets)}; use another --out")
    seeds = [int(s) for s in args.seeds.split(",")]
    from search import search_inputs  # the search's own carving: nnU-Net sees exactly its images
    data, splits, _ = search_inputs(cfg)
    exclude = fixed_trial_params(cfg, data, splits).exclude_from_mean
    save_config(cfg, out / "search_config.yaml")
    (out / "splits.json").write_text(json.dumps(splits, indent=1))
    print(f"splits train {len(splits['train'])} / val {len(splits['val'])} / test {len(splits['test'])}", flush=True)
    if pending_seeds(seeds, read_csv(runs_path)):
        set_nnunet_environment(out)
        folders = nnunet_folders(out)
        for folder in folders.values():  # a fresh export and plan: never one of another config
            shutil.rmtree(folder / DATASET_NAME, ignore_errors=True)
        export_dataset(data, splits, folders["nnUNet_raw"] / DATASET_NAME)
        plan_and_preprocess(DATASET_ID)
        write_split_file(splits, folders["nnUNet_preprocessed"] / DATASET_NAME)
    columns = RUN_COLUMNS + tuple(f"iou_{c}" for c in data.classes)
    runs = run_pending(seeds, runs_path, columns,
                       lambda seed: run_seed(seed, out, data, splits, exclude, args.budget_epochs))
    print(write_summary(out, runs, args.budget_epochs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
