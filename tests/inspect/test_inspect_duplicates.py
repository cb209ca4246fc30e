"""Planted near-duplicates, a repeated mask, an outlier and a duplicate across train/test are all found."""

from __future__ import annotations

import pytest

import fakes
from fakes import NEAR_DUPLICATE, OUTLIER, REPEATED_MASK
from segtune.data import load_dataset
from segtune.inspect import inspect_dataset
from segtune.inspect.duplicates import propose_exclusions, split_leakage


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return inspect_dataset(load_dataset(str(fakes.write_inspection_folder(tmp_path_factory.mktemp("ds") / "ds"))))


def test_the_planted_near_duplicates_and_nothing_else(report):
    assert [g["ids"] for g in report["near_duplicates"]["groups"]] == [list(NEAR_DUPLICATE)]


def test_the_repeated_mask_and_nothing_else(report):
    # img_05's mask differs from img_02's in one pixel, so only the planted group shares a mask
    assert [g["ids"] for g in report["identical_masks"]] == [list(REPEATED_MASK)]


def test_the_all_white_image_is_the_outlier(report):
    assert [o["id"] for o in report["outliers"]["images"]] == [OUTLIER]


def test_the_duplicate_across_train_and_test_is_leakage(report):
    leaks = report["leakage"]["near_duplicates"]
    assert leaks == [{"ids": list(NEAR_DUPLICATE), "splits": {"img_02": ["train"], "img_05": ["test"]}}]
    assert report["leakage"]["identical_masks"] == [] and report["leakage"]["listed_twice"] == {}


def test_proposed_exclusions_name_each_planted_problem(report):
    excluded = report["exclusions"]
    assert sorted(excluded) == ["img_05", "img_07", "img_08", "img_09", OUTLIER]
    assert excluded["img_05"].startswith("near-duplicate of img_02")
    assert "mask identical" in excluded["img_08"] and "outlier" in excluded[OUTLIER]


def test_per_split_report_covers_every_image(report):
    assert report["split_files"] == {"train": 9, "val": 1, "test": 2}
    assert sum(s["images"] for s in report["splits"].values()) == 12
    assert report["class_table"][2]["images"] == 12


def test_near_duplicate_chains_keep_every_image_not_close_to_a_kept_one():
    # a=0000, b=0011, c=1111: a-b 2 bits, b-c 2, a-c 4; threshold 2 -> a kept, b excluded (twin a),
    # c kept: the only kept image, a, is 4 bits away
    hashes = {"a": 0b0000, "b": 0b0011, "c": 0b1111}
    groups = [{"ids": ["a", "b", "c"]}]
    assert list(propose_exclusions(groups, [], [], hashes, threshold=2, exclude_z=7)) == ["b"]


def test_shared_masks_excluded_only_when_multi_class_on_unlike_images():
    hashes = {"a": 0, "b": (1 << 40) - 1, "c": 0, "d": 1}
    masks = [{"ids": ["a", "b"], "classes": [0, 1]},    # unlike images (40 bits apart), two classes -> out
             {"ids": ["c", "d"], "classes": [0, 1]},    # look alike (1 bit): the near-duplicate rule decides
             {"ids": ["a", "c"], "classes": [0]}]       # single-class mask (empty tiles): kept
    assert sorted(propose_exclusions([], masks, [], hashes, threshold=4, exclude_z=7)) == ["a", "b"]


def test_only_far_or_flat_grey_level_outliers_are_proposed():
    outliers = [{"id": "dark", "reasons": [{"feature": "std", "value": 22.2, "z": -5.9}]},      # a dark street: kept
                {"id": "white", "reasons": [{"feature": "mean", "value": 255.0, "z": 6.0},
                                            {"feature": "std", "value": 0.0, "z": -6.0}]},     # flat (std < 2): out
                {"id": "far", "reasons": [{"feature": "mean", "value": 250.0, "z": 7.5}]},     # beyond 7: out
                {"id": "mix", "reasons": [{"feature": "class mix", "value": 0.9, "z": 20.0}]}]  # class mix: kept
    assert sorted(propose_exclusions([], [], outliers, {}, threshold=4, exclude_z=7)) == ["far", "white"]


def test_split_leakage_by_hand():
    splits = {"train": ["a", "b"], "test": ["c"]}
    assert split_leakage([["a", "b"], ["b", "c"], ["x", "c"]], splits) == [
        {"ids": ["b", "c"], "splits": {"b": ["train"], "c": ["test"]}}]
