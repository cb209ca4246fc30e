"""Planted near-duplicates, a repeated mask, an outlier and a duplicate across train/test are all found."""

from __future__ import annotations

import numpy as np
import pytest

import fakes
from fakes import NEAR_DUPLICATE, OUTLIER, REPEATED_MASK
from segtune.data import SegmentationData, load_dataset
from segtune.inspect import duplicate_groups, format_report, inspect_dataset
from segtune.inspect.duplicates import (DEFAULT_HASH_THRESHOLD, hash_matches, near_duplicate_groups, propose_exclusions,
                                        split_leakage)
from segtune.inspect.hashing import fingerprint


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


def _plants_on_one_soil_and_a_copy() -> tuple[list[str], list[np.ndarray]]:
    photos = fakes.plants_on_one_soil(12)
    noise = np.random.default_rng(7).normal(0, 3, photos[2].shape)
    photos.append(np.clip(photos[2] + 12.0 + noise, 0, 255).astype(np.uint8))   # photo 02 again, brighter, noisy
    return [f"p{i:02d}" for i in range(13)], photos


def test_different_plants_on_one_soil_are_hash_matches_but_only_the_copy_is_a_near_duplicate():
    names, photos = _plants_on_one_soil_and_a_copy()
    hashes, thumbnails = zip(*map(fingerprint, photos))
    matches = hash_matches(hashes, DEFAULT_HASH_THRESHOLD, thumbnails)
    every_match = near_duplicate_groups(names, matches, min_correlation=-1)    # the hash alone, as before
    assert sum(len(g["ids"]) for g in every_match) > 2                          # groups different plants
    assert [g["ids"] for g in near_duplicate_groups(names, matches)] == [["p02", "p12"]]


def test_search_keeps_only_the_copy_together():
    names, photos = _plants_on_one_soil_and_a_copy()
    masks = [np.zeros(p.shape[:2], np.uint8) for p in photos]
    data = SegmentationData(photos, masks, names, ("soil", "plant"))
    assert duplicate_groups(data) == [{"p02", "p12"}]
    assert len(duplicate_groups(data, min_correlation=-1)[0]) > 2       # an explicit override still applies


def test_inspection_reports_the_matches_it_did_not_confirm():
    names, photos = _plants_on_one_soil_and_a_copy()
    masks = [np.zeros(p.shape[:2], np.uint8) for p in photos]
    report = inspect_dataset(SegmentationData(photos, masks, names, ("soil", "plant")))
    near = report["near_duplicates"]
    assert [g["ids"] for g in near["groups"]] == [["p02", "p12"]]
    assert near["unconfirmed"] and all(c < near["min_correlation"] for *_, c in near["unconfirmed"])
    assert f"{len(near['unconfirmed'])} hash match(es) not confirmed" in format_report(report)


def test_a_copy_among_copies_is_still_confirmed():
    # 3 of 4 images are one picture (the mean picture is then close to it): their departures still agree;
    # with only 2 images, departures from the mean are opposite by construction, so the hash decides;
    # pictures all alike depart by nothing, so they are one picture
    picture, other = fakes.texture(1), fakes.texture(2)
    brighter = np.clip(picture.astype(int) + 10, 0, 255).astype(np.uint8)
    hashes, thumbnails = zip(*map(fingerprint, [picture, picture, brighter, other]))
    assert [g["ids"] for g in near_duplicate_groups("abcd", hash_matches(hashes, 48, thumbnails))] == [["a", "b", "c"]]
    assert [g["ids"] for g in near_duplicate_groups("ab", hash_matches(hashes[:2], 48, thumbnails[:2]))] == [["a", "b"]]
    copies = hash_matches(hashes[:1] * 3, 48, thumbnails[:1] * 3)      # each is the mean picture: nothing departs
    assert [g["ids"] for g in near_duplicate_groups("abc", copies)] == [["a", "b", "c"]]
