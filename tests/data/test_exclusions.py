"""Exclusion lists: read with comments, applied to images and split lists, wrong ids refused."""

from __future__ import annotations

import pytest

import fakes
from segtune.data import DataError, exclude_images, read_exclusions, without_images, write_exclusions


def test_write_then_read_keeps_ids_and_reasons(tmp_path):
    path = write_exclusions(tmp_path / "x.txt", {"img_01": "near-duplicate of img_00", "img_03": ""}, "made by a test")
    text = path.read_text()
    assert text.startswith("# made by a test\n") and "img_01  # near-duplicate of img_00" in text
    assert read_exclusions(path) == {"img_01": "near-duplicate of img_00", "img_03": ""}


def test_comments_and_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("# header\n\n  img_02   # too dark  \n# img_04  # kept: the user commented it out\nimg_05\n")
    assert read_exclusions(path) == {"img_02": "too dark", "img_05": ""}


def test_excluded_ids_leave_images_and_every_split_list():
    data = fakes.make_segmentation_data([{0, 1}] * 6, splits={"train": ["s000", "s001", "s002"], "test": ["s003", "s004"]})
    kept = without_images(data, {"s001", "s004"}, "x.txt")
    assert kept.names == ["s000", "s002", "s003", "s005"] and len(kept.images) == len(kept.masks) == 4
    assert kept.splits == {"train": ["s000", "s002"], "test": ["s003"]}
    assert data.names[1] == "s001"   # the original is untouched


def test_a_split_emptied_by_exclusions_is_dropped_so_it_gets_carved():
    data = fakes.make_segmentation_data([{0, 1}] * 6, splits={"train": ["s000", "s001", "s002", "s003"],
                                                             "val": ["s004"], "test": ["s005"]})
    assert without_images(data, {"s004"}, "x.txt").splits == {"train": ["s000", "s001", "s002", "s003"],
                                                               "test": ["s005"]}


def test_an_unknown_id_is_a_data_error_naming_the_file():
    data = fakes.make_segmentation_data([{0}] * 3)
    with pytest.raises(DataError) as info:
        without_images(data, {"s000", "nope"}, "lists/x.txt")
    assert "lists/x.txt" in str(info.value) and "nope" in str(info.value)


def test_missing_file_names_the_option_and_none_excludes_nothing(tmp_path):
    data = fakes.make_segmentation_data([{0}] * 3)
    assert exclude_images(data, None) == (data, {})
    with pytest.raises(FileNotFoundError, match="exclude_file"):
        exclude_images(data, tmp_path / "missing.txt")


def test_exclude_file_that_is_not_utf8_is_a_data_error_naming_it(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes("img_01  # d\xe9j\xe0 vu\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        exclude_images(fakes.make_segmentation_data([{0, 1}] * 3), path)
    [(where, why)] = info.value.problems
    assert where == f"exclude_file {path}" and "0xe9" in why and "UTF-8" in why
