"""carve_folds: K seeded folds for a refit, a partition of the ids that keeps groups whole and spreads rare classes."""

import pytest

from segtune.data import carve_folds


def _present(count: int, rare: set[int]) -> dict[str, set[int]]:
    """Image i holds class 0; the images in `rare` also hold class 3."""
    return {f"img_{i:02d}": {0} | ({3} if i in rare else set()) for i in range(count)}


def test_folds_are_a_partition_of_the_ids_with_balanced_sizes():
    present = _present(11, set())
    folds = carve_folds(sorted(present), present, 3, seed=0)
    assert sorted(i for fold in folds for i in fold) == sorted(present)  # every id once, none added
    assert sorted(len(f) for f in folds) == [3, 4, 4]  # 11 = 4 + 4 + 3


def test_the_seed_decides_the_folds_and_the_same_seed_gives_the_same_folds():
    present = _present(12, set())
    ids = sorted(present)
    assert carve_folds(ids, present, 3, seed=1) == carve_folds(ids, present, 3, seed=1)
    assert carve_folds(ids, present, 3, seed=1) != carve_folds(ids, present, 3, seed=2)


def test_a_rare_class_is_spread_over_the_folds():
    present = _present(12, {2, 5, 9})  # class 3 in three images: one per fold of three
    folds = carve_folds(sorted(present), present, 3, seed=0)
    assert [sum(3 in present[i] for i in fold) for fold in folds] == [1, 1, 1]


def test_a_group_stays_in_one_fold():
    present = _present(10, set())
    group = {"img_01", "img_04", "img_07"}
    for seed in range(5):
        folds = carve_folds(sorted(present), present, 2, seed, groups=[group])
        assert sum(bool(group & set(fold)) for fold in folds) == 1, seed
        assert sorted(len(f) for f in folds) == [5, 5]  # the group (3) and 2 more against 5 singles


def test_more_folds_than_units_is_refused_naming_the_counts():
    present = _present(4, set())
    with pytest.raises(ValueError, match="5 folds of 4 images: use 2 to 4 folds"):
        carve_folds(sorted(present), present, 5, seed=0)
    with pytest.raises(ValueError, match="4 folds of 4 images in 3 units .near-duplicate groups stay in one fold.: "
                                         "use 2 to 3 folds"):
        carve_folds(sorted(present), present, 4, seed=0, groups=[{"img_00", "img_01"}])
