"""make_splits: seeded, disjoint, complete, respects a dataset's own splits, keeps rare classes everywhere."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import fakes
from segtune.data import SPLITS, exclude_images, load_dataset, make_splits, make_synthetic, write_exclusions

RARE = 3


def assert_partition(splits, all_ids):
    assert set(splits) == set(SPLITS)
    train, val, test = (set(splits[s]) for s in SPLITS)
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(all_ids)
    assert sum(len(splits[s]) for s in SPLITS) == len(all_ids)      # no duplicates within a split
    for s in SPLITS:
        assert splits[s] == sorted(splits[s])


def classes_in(data, ids):
    present = dict(zip(data.names, data.classes_present()))
    return set().union(*(present[i] for i in ids)) if ids else set()


# --------------------------------------------------------------------------- carving from scratch

def test_synthetic_split_sizes_and_partition():
    data = make_synthetic()
    splits = make_splits(data, val_fraction=0.15, test_fraction=0.15, seed=0)
    assert_partition(splits, data.names)
    # 48 images: round(48 * 0.15) = 7 each, 34 left for training
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (34, 7, 7)


def test_same_seed_same_splits_other_seed_other_splits():
    data = make_synthetic()
    first = make_splits(data, 0.15, 0.15, seed=3)
    again = make_splits(make_synthetic(), 0.15, 0.15, seed=3)
    other = make_splits(data, 0.15, 0.15, seed=4)
    assert first == again
    assert first != other
    assert_partition(other, data.names)


def test_split_does_not_mutate_the_data():
    data = fakes.make_segmentation_data([{0}] * 10, splits={"train": [f"s{i:03d}" for i in range(8)],
                                                             "test": ["s008", "s009"]})
    before = {k: list(v) for k, v in data.splits.items()}
    make_splits(data, 0.2, 0.2, seed=0)
    assert data.splits == before


def test_zero_fraction_gives_an_empty_split():
    data = fakes.make_segmentation_data([{0, 1}] * 10)
    splits = make_splits(data, val_fraction=0.2, test_fraction=0.0, seed=0)
    assert splits["test"] == [] and len(splits["val"]) == 2 and len(splits["train"]) == 8
    assert_partition(splits, data.names)


def test_fractions_that_leave_no_training_images_are_refused():
    data = fakes.make_segmentation_data([{0}] * 4)
    with pytest.raises(ValueError):
        make_splits(data, val_fraction=0.5, test_fraction=0.5, seed=0)


@pytest.mark.parametrize("seed", range(10))
def test_synthetic_rare_class_reaches_every_split(seed):
    data = make_synthetic()
    rare_images = [n for n, present in zip(data.names, data.classes_present()) if RARE in present]
    assert rare_images == [f"synthetic_{i:03d}" for i in range(0, 48, 3)]      # every third image
    splits = make_splits(data, 0.15, 0.15, seed=seed)
    for split in SPLITS:
        assert classes_in(data, splits[split]) == {0, 1, 2, 3}, split


def hand_made_rare():
    """20 images: class 1 everywhere, class 2 in 4 images, class 3 ('rare') in exactly 3."""
    present = [{0, 1} for _ in range(20)]
    for i in (2, 9, 13, 18):
        present[i].add(2)
    for i in (4, 11, 17):
        present[i].add(RARE)
    return fakes.make_segmentation_data(present)


@pytest.mark.parametrize("seed", range(20))
def test_hand_made_rare_class_in_three_images_lands_once_in_each_split(seed):
    data = hand_made_rare()
    splits = make_splits(data, 0.15, 0.15, seed=seed)
    assert_partition(splits, data.names)
    assert [len(splits[s]) for s in SPLITS] == [14, 3, 3]
    holders = {"s004", "s011", "s017"}
    for split in SPLITS:
        assert len(holders & set(splits[split])) == 1, (split, splits[split])
        assert 2 in classes_in(data, splits[split]), split


def test_rare_class_with_four_images_of_twenty_in_every_split():
    present = [{0, 1} for _ in range(20)]
    for i in (0, 1, 2, 3):          # clustered at the start: a plain shuffle often misses a split
        present[i].add(RARE)
    data = fakes.make_segmentation_data(present)
    for seed in range(10):
        splits = make_splits(data, 0.15, 0.15, seed=seed)
        for split in SPLITS:
            assert RARE in classes_in(data, splits[split]), (seed, split)


def test_ignore_pixels_do_not_count_as_a_class():
    data = fakes.make_segmentation_data([{0, 255}] * 3 + [{0}] * 7, ignore_index=255)
    assert all(p == {0} for p in data.classes_present())
    assert_partition(make_splits(data, 0.2, 0.2, seed=0), data.names)


# --------------------------------------------------------------------------- a dataset's own splits

def test_own_three_splits_are_kept_exactly(tmp_path):
    own = {"train": ["img_00", "img_03", "img_05", "img_06"], "val": ["img_02", "img_07"],
           "test": ["img_01", "img_04"]}
    data = load_dataset(str(fakes.write_index_folder(tmp_path / "ds", n=8, with_splits=own)))
    for seed in (0, 1, 2):
        splits = make_splits(data, val_fraction=0.3, test_fraction=0.3, seed=seed)
        assert splits == own


def test_missing_val_is_carved_out_of_train_and_test_kept(tmp_path):
    ids = [fakes.image_id(i) for i in range(10)]
    own = {"train": ids[:8], "test": ids[8:]}
    data = load_dataset(str(fakes.write_index_folder(tmp_path / "ds", n=10, with_splits=own)))
    splits = make_splits(data, val_fraction=0.2, test_fraction=0.5, seed=0)
    assert splits["test"] == ids[8:]                      # the dataset's test split, untouched
    assert len(splits["val"]) == 2                          # round(10 * 0.2)
    assert set(splits["val"]) <= set(ids[:8])
    assert sorted(splits["train"] + splits["val"]) == ids[:8]
    assert_partition(splits, ids)


def test_missing_test_is_carved_out_of_train_and_val_kept():
    ids = [f"s{i:03d}" for i in range(10)]
    data = fakes.make_segmentation_data([{0}] * 10, splits={"train": ids[:7], "val": ids[7:]})
    splits = make_splits(data, val_fraction=0.5, test_fraction=0.2, seed=1)
    assert splits["val"] == ids[7:]
    assert len(splits["test"]) == 2 and set(splits["test"]) <= set(ids[:7])
    assert_partition(splits, ids)


def test_only_a_test_file_means_everything_else_is_training_data():
    ids = [f"s{i:03d}" for i in range(10)]
    data = fakes.make_segmentation_data([{0}] * 10, splits={"test": ["s002", "s007"]})
    splits = make_splits(data, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert splits["test"] == ["s002", "s007"]
    assert len(splits["val"]) == 2 and not {"s002", "s007"} & set(splits["val"])
    assert_partition(splits, ids)


def test_id_in_train_and_test_is_kept_only_in_test_with_a_warning(tmp_path):
    ids = [fakes.image_id(i) for i in range(10)]
    own = {"train": ids[:8], "test": ["img_05", "img_08", "img_09"]}       # img_05 in both
    data = load_dataset(str(fakes.write_index_folder(tmp_path / "ds", n=10, with_splits=own)))
    with pytest.warns(UserWarning, match="img_05"):
        splits = make_splits(data, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert splits["test"] == ["img_05", "img_08", "img_09"]
    assert "img_05" not in splits["train"] and "img_05" not in splits["val"]
    assert_partition(splits, ids)


def test_id_in_val_and_test_is_kept_only_in_test():
    ids = [f"s{i:03d}" for i in range(6)]
    data = fakes.make_segmentation_data([{0}] * 6, splits={"train": ids[:3], "val": ["s003", "s004"],
                                                            "test": ["s004", "s005"]})
    with pytest.warns(UserWarning):
        splits = make_splits(data, 0.2, 0.2, seed=0)
    assert splits == {"train": ids[:3], "val": ["s003"], "test": ["s004", "s005"]}


def test_no_warning_without_overlap(tmp_path):
    data = load_dataset(str(fakes.write_index_folder(tmp_path / "ds", n=6, with_splits=True)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_splits(data, 0.2, 0.2, seed=0)


# --------------------------------------------------------------------------- the real CWFID folder

CWFID = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "cwfid"


def test_cwfid_loads_and_keeps_its_own_test_split():
    if not (CWFID / "images").is_dir():
        pytest.skip(f"real dataset not present at {CWFID}")
    data = load_dataset(str(CWFID), resize=(96, 128))
    assert len(data.names) == 60
    assert data.num_classes == 3 and data.classes == ("background", "crop", "weed")
    assert all(im.shape == (96, 128, 3) for im in data.images)
    assert all(m.shape == (96, 128) for m in data.masks)
    assert set().union(*data.classes_present()) == {0, 1, 2}

    own_test = (CWFID / "splits" / "test.txt").read_text().split()
    own_train = (CWFID / "splits" / "train.txt").read_text().split()
    assert len(own_test) == 21 and len(own_train) == 40 and "028" in own_test and "028" in own_train

    with pytest.warns(UserWarning, match="028"):
        splits = make_splits(data, val_fraction=0.15, test_fraction=0.15, seed=0)
    assert splits["test"] == sorted(own_test)
    assert "028" not in splits["train"] and "028" not in splits["val"]
    assert len(splits["val"]) == 9                          # round(60 * 0.15), carved from train
    assert set(splits["val"]) <= set(own_train)
    assert len(splits["train"]) == 39 - 9
    assert_partition(splits, data.names)
    for split in SPLITS:
        assert classes_in(data, splits[split]) == {0, 1, 2}, split


# --------------------------------------------------------------------------- a split left empty is refused

def test_near_duplicate_groups_too_large_to_carve_are_refused_with_their_sizes():
    data = fakes.make_segmentation_data([{0, 1}] * 20)
    groups = [{f"s{i:03d}" for i in range(10)}, {f"s{i:03d}" for i in range(10, 20)}]
    # round(20 * 0.15) = 3 images wanted for val, but each group of 10 must stay whole
    with pytest.raises(ValueError, match=r"val split is empty: val_fraction 0.15 asks for 3 of 20 .* groups of 10, 10 "
                                         r"images .* exclude_file .* splits/val.txt"):
        make_splits(data, 0.15, 0.15, seed=0, groups=groups)


def test_a_zero_val_fraction_without_a_val_file_is_refused():
    data = fakes.make_segmentation_data([{0, 1}] * 10)
    with pytest.raises(ValueError, match="val split is empty: val_fraction is 0 and the dataset has no splits/val.txt"):
        make_splits(data, val_fraction=0.0, test_fraction=0.2, seed=0)


def test_a_split_file_left_empty_by_later_splits_is_refused():
    ids = [f"s{i:03d}" for i in range(6)]
    data = fakes.make_segmentation_data([{0}] * 6, splits={"train": ids[:4], "val": ["s004"], "test": ["s004", "s005"]})
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"val split is empty: the dataset's splits/val.txt"):
        make_splits(data, 0.2, 0.2, seed=0)


def test_split_files_that_leave_nothing_for_training_are_refused():
    ids = [f"s{i:03d}" for i in range(6)]
    data = fakes.make_segmentation_data([{0}] * 6, splits={"val": ids[:3], "test": ids[3:]})
    with pytest.raises(ValueError, match="train split is empty"):
        make_splits(data, 0.2, 0.2, seed=0)


def test_an_exclusion_list_that_empties_the_training_split_is_refused(tmp_path):
    ids = [f"s{i:03d}" for i in range(6)]
    data = fakes.make_segmentation_data([{0}] * 6, splits={"train": ids[:2], "val": ids[2:4], "test": ids[4:]})
    data, _ = exclude_images(data, write_exclusions(tmp_path / "exclude.txt", {"s000": "blurred", "s001": "blurred"}))
    with pytest.raises(ValueError, match=r"train split is empty: .*less exclude_file"):
        make_splits(data, 0.2, 0.2, seed=0)
