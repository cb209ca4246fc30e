"""make_splits(groups=...): a group of near-duplicates is carved as one unit and never straddles splits."""

from __future__ import annotations

import pytest

import fakes
from segtune.data import SPLITS, make_splits

GROUP = {"s001", "s002", "s003"}


def split_of(splits):
    return {i: s for s in SPLITS for i in splits[s]}


def straddles(splits, group) -> bool:
    where = split_of(splits)
    return len({where[i] for i in group}) > 1


def test_without_groups_some_seed_splits_the_group():
    data = fakes.make_segmentation_data([{0, 1}] * 20)
    assert any(straddles(make_splits(data, 0.2, 0.2, seed), GROUP) for seed in range(20))


@pytest.mark.parametrize("seed", range(20))
def test_with_groups_the_group_stays_together_and_sizes_hold(seed):
    data = fakes.make_segmentation_data([{0, 1}] * 20)
    splits = make_splits(data, 0.2, 0.2, seed, groups=[GROUP])
    assert not straddles(splits, GROUP)
    # 20 images: round(20 * 0.2) = 4 each for val and test, 12 for train
    assert [len(splits[s]) for s in SPLITS] == [12, 4, 4]
    assert set(split_of(splits)) == set(data.names)


def test_overlapping_groups_merge():
    data = fakes.make_segmentation_data([{0, 1}] * 20)
    for seed in range(20):
        splits = make_splits(data, 0.2, 0.2, seed, groups=[{"s001", "s002"}, {"s002", "s003"}])
        assert not straddles(splits, GROUP)


def test_groups_do_not_change_the_datasets_own_splits():
    own = {"train": [f"s{i:03d}" for i in range(10)], "test": ["s010", "s011"]}
    data = fakes.make_segmentation_data([{0, 1}] * 12, splits=own)
    splits = make_splits(data, 0.2, 0.2, 0, groups=[{"s000", "s011"}])
    assert splits["test"] == ["s010", "s011"] and "s000" in splits["train"] + splits["val"]
