"""bench/nnunet_peer.py: the export nnU-Net reads, segtune's splits as fold 0, the matched budget, resuming by seed."""

import csv
import dataclasses
import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from bench.compare_searchers import format_summary
from bench.nnunet_peer import (DATASET_NAME, epoch_lengths, export_dataset, main, matched_iterations, nnunet_labels,
                               nnunet_mask, run_pending, summary_row, validation_iterations,
                               write_split_file)
from fakes import IGNORE, class_layout, image_for, image_id, write_index_folder
from search import load_config, search_inputs

HAS_NNUNET = importlib.util.find_spec("nnunetv2") is not None


@pytest.fixture
def index_data(tmp_path):
    """6 RGB 32x48 images, classes background/crop/weed, ignore pixels at [0:2, 0:2]; own splits 4 / 1 / 1."""
    root = write_index_folder(tmp_path / "data", n=6, with_splits=True)
    return load_config(None, {"data": str(root), "crop": [32, 32], "exclude_from_mean": ["background"]})


def test_export_writes_nnunets_raw_format_with_the_ignore_label_last(index_data, tmp_path):
    data, splits, _ = search_inputs(index_data)
    assert splits == {"train": [image_id(i) for i in range(4)], "val": [image_id(4)], "test": [image_id(5)]}
    folder = export_dataset(data, splits, tmp_path / "raw" / DATASET_NAME)
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [f"{image_id(i)}_0000.png" for i in range(5)]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == [f"{image_id(i)}.png" for i in range(5)]
    assert [p.name for p in (folder / "imagesTs").iterdir()] == [f"{image_id(5)}_0000.png"]
    assert json.loads((folder / "dataset.json").read_text()) == {
        "channel_names": {"0": "R", "1": "G", "2": "B"},
        "labels": {"background": 0, "crop": 1, "weed": 2, "ignore": 3},  # nnU-Net: the ignore label is the highest
        "numTraining": 5, "file_ending": ".png"}
    image = np.asarray(Image.open(folder / "imagesTr" / f"{image_id(2)}_0000.png"))
    assert image.shape == (32, 48, 3) and (image == image_for(2, (32, 48))).all()  # RGB in one file, as NaturalImage2DIO reads
    label = np.asarray(Image.open(folder / "labelsTr" / f"{image_id(2)}.png"))
    expected = class_layout((32, 48))
    expected[0:2, 0:2] = 3  # segtune's 255 -> nnU-Net's ignore label 3
    assert label.dtype == np.uint8 and (label == expected).all()


def test_images_are_exported_at_the_configs_resize(index_data, tmp_path):
    data, splits, _ = search_inputs(dataclasses.replace(index_data, resize=(32, 32)))
    folder = export_dataset(data, splits, tmp_path / DATASET_NAME)
    assert np.asarray(Image.open(folder / "imagesTs" / f"{image_id(5)}_0000.png")).shape == (32, 32, 3)
    assert np.asarray(Image.open(folder / "labelsTr" / f"{image_id(0)}.png")).shape == (32, 32)


def test_labels_name_label_zero_background_and_keep_names_unique():
    assert nnunet_labels(("soil", "plant"), has_ignore=False) == {"background": 0, "plant": 1}
    assert nnunet_labels(("bg", "ignore", "background"), has_ignore=True) == {
        "background": 0, "ignore_1": 1, "background_2": 2, "ignore": 3}


def test_mask_moves_only_ignore_pixels():
    mask = np.array([[0, 1, 255], [2, 255, 0]], dtype=np.uint8)
    assert nnunet_mask(mask, IGNORE, 3).tolist() == [[0, 1, 3], [2, 3, 0]]
    assert nnunet_mask(mask, None, 3).tolist() == mask.tolist()


def test_split_file_fold_zero_is_the_splits_a_segtune_search_carves(tmp_path):
    cfg = load_config(None, {"data": "synthetic", "split_seed": 5, "seed": 2})
    _, splits, _ = search_inputs(cfg)
    path = write_split_file(splits, tmp_path)
    assert json.loads(path.read_text()) == [{"train": splits["train"], "val": splits["val"]}]


def test_budget_matches_the_training_images_of_a_segtune_run():
    # crop_weed at 32 epochs: 30 train images -> 960 images; batch 2 -> 480 iterations, 15 in each of 32 epochs
    assert matched_iterations(32, 30, 2) == 480
    assert epoch_lengths(480, 32) == [15] * 32
    # 3 epochs x 10 images = 30 images; batch 4 -> ceil(7.5) = 8 iterations = 32 images (< one batch over)
    assert matched_iterations(3, 10, 4) == 8
    assert epoch_lengths(8, 3) == [3, 3, 2]
    assert epoch_lengths(2, 5) == [1, 1]  # fewer iterations than epochs: one iteration an epoch
    # 9 val images, batch 2 -> 5 validation batches an epoch (nnU-Net's default is 50)
    assert validation_iterations(9, 2) == 5 and validation_iterations(1, 12) == 1


def test_a_rerun_skips_the_seeds_runs_csv_already_holds(tmp_path):
    columns = ("seed", "test_miou", "iterations", "batch", "wall_s")
    runs_path = tmp_path / "runs.csv"
    with open(runs_path, "w", newline="") as file:
        csv.writer(file).writerows([columns, (0, 0.5, 10, 2, 7.0)])
    ran = []

    def fake_seed(seed):
        ran.append(seed)
        return {"seed": seed, "test_miou": 0.1 * seed, "iterations": 10, "batch": 2, "wall_s": 1.0}
    runs = run_pending([0, 1, 2], runs_path, columns, fake_seed)
    assert ran == [1, 2]
    with open(runs_path, newline="") as file:
        saved = list(csv.DictReader(file))
    assert [(r["seed"], r["test_miou"]) for r in saved] == [("0", "0.5"), ("1", "0.1"), ("2", "0.2")]
    assert [int(r["seed"]) for r in runs] == [0, 1, 2]
    assert run_pending([0, 1, 2], runs_path, columns, fake_seed) and ran == [1, 2]  # nothing left to run


def test_summary_row_has_median_and_range_over_seeds_in_compare_searchers_table():
    runs = [{"val_miou": "0.6", "test_miou": "0.5"}, {"val_miou": "0.4", "test_miou": "0.3"},
            {"val_miou": "0.5", "test_miou": ""}]
    row = summary_row(runs)
    # val 0.4, 0.5, 0.6 -> median 0.5; test 0.5, 0.3 (one missing) -> median 0.4
    assert (row["val_median"], row["val_min"], row["val_max"]) == pytest.approx((0.5, 0.4, 0.6))
    assert (row["test_median"], row["test_min"], row["test_max"]) == pytest.approx((0.4, 0.3, 0.5))
    assert "| nnU-Net 2d | 3 | 0.5000 [0.4000, 0.6000] | 0.4000 [0.3000, 0.5000] | - |" in format_summary([row], 4)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_NNUNET, reason="nnunetv2 is not installed (the bench extra, in its own environment)")
def test_nnunet_plans_trains_two_iterations_and_scores_the_test_split(index_data, tmp_path, monkeypatch):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA", "nnUNet_def_n_proc"):
        monkeypatch.delenv(name, raising=False)  # undone after the test; main sets them
    config = tmp_path / "tiny.yaml"
    config.write_text(f"data: {index_data.data}\ncrop: [32, 32]\nexclude_from_mean: [background]\n")
    out = tmp_path / "out"
    # 1 epoch x 4 train images at the plan's batch 2 -> 2 iterations
    assert main([str(config), "--seeds", "0", "--budget-epochs", "1", "--out", str(out)]) == 0
    with open(out / "runs.csv", newline="") as file:
        (run,) = list(csv.DictReader(file))
    assert (run["batch"], run["iterations"], run["images_seen"], run["epochs"]) == ("2", "2", "4", "1")
    assert 0 <= float(run["test_miou"]) <= 1 and set(run) >= {"iou_background", "iou_crop", "iou_weed"}
    splits = json.loads((out / "nnUNet_preprocessed" / DATASET_NAME / "splits_final.json").read_text())
    assert splits == [{"train": [image_id(i) for i in range(4)], "val": [image_id(4)]}]
    assert (out / "seeds" / "seed0" / "fold_0" / "checkpoint_final.pth").is_file()
    assert "nnU-Net 2d | 1 |" in (out / "summary.md").read_text()
