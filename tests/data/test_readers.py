"""load_dataset: the three formats read right, and bad input fails early with one complete DataError."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fakes
from fakes import BLACK, CLASSES, COLOUR_MAP, IGNORE, ORANGE, RED, WHITE, image_id
from segtune.data import DataError, SegmentationData, load_dataset, make_synthetic
from segtune.data.errors import ColourMasksWithoutMap

H, W = 32, 48          # fakes' default folder image size; thirds are columns 0-15 | 16-31 | 32-47
COL = {0: 5, 1: 24, 2: 40}   # one column inside each class band


def problem_for(error: DataError, filename: str) -> str:
    """The reason given for the one problem whose location ends with `filename`."""
    found = [why for where, why in error.problems if where.endswith(filename)]
    assert len(found) == 1, f"expected exactly one problem for {filename}, got {error.problems}"
    return found[0]


# --------------------------------------------------------------------------- index folder

def test_index_folder_reads_counts_shapes_and_ids(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=6)
    data = load_dataset(str(root))

    assert isinstance(data, SegmentationData)
    assert data.names == [image_id(i) for i in range(6)]
    assert len(data.images) == len(data.masks) == 6
    for image, mask in zip(data.images, data.masks):
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        assert mask.shape == (H, W) and mask.dtype == np.uint8
    assert data.classes == CLASSES
    assert data.num_classes == 3 and data.in_channels == 3
    assert data.ignore_index == 255
    assert data.splits == {}


def test_index_folder_pixels_and_mask_values_are_exact(tmp_path):
    data = load_dataset(str(fakes.write_index_folder(tmp_path / "ds", n=4)))
    index = data.index_of()
    image, mask = data.images[index["img_03"]], data.masks[index["img_03"]]

    # class bands: 0 | 1 | 2, ignore (255) kept in the 2x2 top-left corner
    assert mask[10, COL[0]] == 0 and mask[10, COL[1]] == 1 and mask[10, COL[2]] == 2
    assert mask[0, 0] == mask[1, 1] == IGNORE
    assert mask[2, 2] == 0
    assert set(np.unique(mask).tolist()) == {0, 1, 2, 255}
    # image 3 holds 10*3 + 50*class in every channel
    assert image[10, COL[0]].tolist() == [30, 30, 30]
    assert image[10, COL[1]].tolist() == [80, 80, 80]
    assert image[10, COL[2]].tolist() == [130, 130, 130]
    # masks/images pair up by file name: image 0 differs from image 3
    assert data.images[index["img_00"]][10, COL[2]].tolist() == [100, 100, 100]


def test_index_folder_grayscale_images_get_one_channel(tmp_path):
    data = load_dataset(str(fakes.write_index_folder(tmp_path / "ds", n=3, channels=1)))
    assert data.in_channels == 1
    assert all(im.shape == (H, W, 1) and im.dtype == np.uint8 for im in data.images)
    assert data.images[2][10, COL[1], 0] == 70


def test_index_folder_reads_its_own_split_files(tmp_path):
    splits = {"train": ["img_00", "img_02", "img_04"], "val": ["img_01"], "test": ["img_03", "img_05"]}
    data = load_dataset(str(fakes.write_index_folder(tmp_path / "ds", n=6, with_splits=splits)))
    assert data.splits == splits


def test_split_files_may_list_file_names_or_paths_and_call_val_validation(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=6)
    fakes.write_splits(root, {"train": ["img_00.png", "images/img_02.png", "img_04", "img_04.png"],   # 4 listed twice
                              "validation": ["masks\\img_01.png"], "test": ["img_03", "img_05.png"]})
    data = load_dataset(str(root))
    assert data.splits == {"train": ["img_00", "img_02", "img_04"], "val": ["img_01"], "test": ["img_03", "img_05"]}
    fakes.write_splits(root, {"val": ["img_01"]})                   # val.txt beside validation.txt: which one?
    with pytest.raises(DataError, match="has val.txt, validation.txt: one val split file"):
        load_dataset(str(root))


def test_split_file_naming_an_unknown_id_is_a_data_error(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=4,
                                    with_splits={"train": ["img_00", "img_01"], "test": ["img_99"]})
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert "test.txt" in str(info.value) and "img_99" in str(info.value)


def test_classes_json_null_ignore_index_means_no_ignore(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=2, ignore_index=None, with_ignore_pixels=False)
    data = load_dataset(str(root))
    assert data.ignore_index is None
    assert set(np.unique(data.masks[0]).tolist()) == {0, 1, 2}


def test_255_is_out_of_range_when_classes_json_says_no_ignore(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=2, ignore_index=None, with_ignore_pixels=True)
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert len(info.value.problems) == 2
    assert "255" in problem_for(info.value, "img_00.png")


def test_classes_from_config_when_no_classes_json(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=2, classes=None)
    data = load_dataset(str(root), classes=("bg", "crop", "weed"))
    assert data.classes == ("bg", "crop", "weed")
    assert data.ignore_index == 255


def test_no_classes_json_and_no_classes_is_a_data_error(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=2, classes=None)
    with pytest.raises(DataError, match="classes.json"):
        load_dataset(str(root))


@pytest.mark.parametrize("size", [(16, 24), (20, 30), (64, 96)])
def test_index_folder_resize_gives_requested_size_and_only_valid_mask_values(tmp_path, size):
    root = fakes.write_index_folder(tmp_path / "ds", n=3)
    data = load_dataset(str(root), resize=size)
    for image, mask in zip(data.images, data.masks):
        assert image.shape == size + (3,) and image.dtype == np.uint8
        assert mask.shape == size and mask.dtype == np.uint8
        # nearest neighbour: no blended values such as 128 between class 0 and ignore 255
        assert set(np.unique(mask).tolist()) <= {0, 1, 2, 255}
    height, width = size
    mid = height // 2
    # the band layout survives: left/middle/right of the resized mask keep their classes
    assert data.masks[0][mid, width // 6] == 0
    assert data.masks[0][mid, width // 2] == 1
    assert data.masks[0][mid, width - 1 - width // 6] == 2
    assert data.masks[0][0, 0] == 255


def test_grayscale_resize_keeps_one_channel(tmp_path):
    data = load_dataset(str(fakes.write_index_folder(tmp_path / "ds", n=2, channels=1)), resize=(16, 24))
    assert all(im.shape == (16, 24, 1) for im in data.images)


# --------------------------------------------------------------------------- colour folder

def test_colour_folder_maps_colours_to_classes(tmp_path):
    root = fakes.write_colour_folder(tmp_path / "ds", n=5)
    data = load_dataset(str(root), classes=("background", "crop", "weed"), colour_map=COLOUR_MAP)

    assert len(data.images) == 5 and data.names == [image_id(i) for i in range(5)]
    assert data.classes == ("background", "crop", "weed")
    mask = data.masks[0]
    assert mask.shape == (H, W) and mask.dtype == np.uint8
    # written colours, hand-checked against COLOUR_MAP
    raw = fakes.colour_mask((H, W))
    assert tuple(raw[5, COL[0]]) == BLACK and mask[5, COL[0]] == 0
    assert tuple(raw[H - 3, COL[0]]) == ORANGE and mask[H - 3, COL[0]] == 0   # second colour, same class
    assert tuple(raw[5, COL[1]]) == WHITE and mask[5, COL[1]] == 1
    assert tuple(raw[5, COL[2]]) == RED and mask[5, COL[2]] == 2
    np.testing.assert_array_equal(mask, fakes.class_layout((H, W)))
    assert all(im.shape == (H, W, 3) for im in data.images)


def test_colour_folder_grayscale_images_and_resize(tmp_path):
    root = fakes.write_colour_folder(tmp_path / "ds", n=2, channels=1)
    data = load_dataset(str(root), classes=CLASSES, colour_map=COLOUR_MAP, resize=(20, 30))
    assert data.images[0].shape == (20, 30, 1)
    assert data.masks[0].shape == (20, 30)
    assert set(np.unique(data.masks[0]).tolist()) == {0, 1, 2}


def test_colour_map_may_send_a_colour_to_the_ignore_index(tmp_path):
    root = fakes.write_colour_folder(tmp_path / "ds", n=2)
    colour_map = dict(COLOUR_MAP, **{"255,128,0": 255})     # orange = unlabelled
    data = load_dataset(str(root), classes=CLASSES, colour_map=colour_map)
    assert data.masks[0][H - 3, COL[0]] == 255
    assert data.masks[0][5, COL[0]] == 0


def test_colour_not_in_colour_map_is_named_with_its_file(tmp_path):
    root = fakes.write_colour_folder(tmp_path / "ds", n=3)
    bad = fakes.colour_mask((H, W))
    bad[7, 7] = (1, 2, 3)
    fakes.write_png(root / "masks" / "img_01.png", bad)
    with pytest.raises(DataError) as info:
        load_dataset(str(root), classes=CLASSES, colour_map=COLOUR_MAP)
    assert len(info.value.problems) == 1
    assert "(1,2,3)" in problem_for(info.value, "masks/img_01.png")


def test_colour_map_to_a_class_that_does_not_exist_is_out_of_range(tmp_path):
    root = fakes.write_colour_folder(tmp_path / "ds", n=2)
    with pytest.raises(DataError, match="out of range"):
        load_dataset(str(root), classes=CLASSES, colour_map=dict(COLOUR_MAP, **{"216,67,82": 7}))


def test_single_channel_mask_with_colour_map_is_a_data_error(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=2, classes=None)
    with pytest.raises(DataError) as info:
        load_dataset(str(root), classes=CLASSES, colour_map=COLOUR_MAP)
    assert len(info.value.problems) == 2
    assert "single-channel" in problem_for(info.value, "masks/img_00.png")


def test_colour_masks_without_colour_map_are_one_problem_pointing_at_inspect(tmp_path):
    root = fakes.write_colour_folder(tmp_path / "ds", n=5)
    with pytest.raises(ColourMasksWithoutMap) as info:
        load_dataset(str(root), classes=CLASSES)
    assert [where for where, _ in info.value.problems] == [str(root / "masks")]   # one, not one per mask
    assert "5 of 5 masks are RGB colour masks" in info.value.problems[0][1]
    assert f"segtune inspect {root}" in str(info.value) and "channels" not in str(info.value)
    assert sorted(p.name for p in info.value.mask_files) == [f"{image_id(i)}.png" for i in range(5)]


def test_colour_masks_without_colour_map_come_before_a_missing_classes_json(tmp_path):
    root = fakes.write_colour_folder(tmp_path / "ds", n=2)
    with pytest.raises(ColourMasksWithoutMap):
        load_dataset(str(root))


@pytest.mark.parametrize("folders", [("Images", "Masks"), ("IMAGES", "masks")])
def test_images_and_masks_folders_are_found_whatever_their_case(tmp_path, folders):
    root = fakes.write_colour_folder(tmp_path / "ds", n=3, folders=folders)
    fakes.write_splits(root, {"val": ["img_01"]})
    (root / "splits").rename(root / "Splits")
    data = load_dataset(str(root), classes=CLASSES, colour_map=COLOUR_MAP)
    assert data.names == ["img_00", "img_01", "img_02"] and data.splits == {"val": ["img_01"]}


def test_two_folders_differing_only_in_case_are_refused(tmp_path):
    root = fakes.write_colour_folder(tmp_path / "ds", n=2, folders=("Images", "Masks"))
    (root / "images").mkdir()
    if (root / "Images").samefile(root / "images"):
        pytest.skip("a case-insensitive file system holds one folder under both names")
    with pytest.raises(DataError, match=r"2 folders named images/ \(Images/, images/\); keep only one"):
        load_dataset(str(root), classes=CLASSES, colour_map=COLOUR_MAP)


def test_malformed_colour_map_key_is_a_data_error(tmp_path):
    root = fakes.write_colour_folder(tmp_path / "ds", n=2)
    with pytest.raises(DataError, match="255,255"):
        load_dataset(str(root), classes=CLASSES, colour_map={"255,255": 1, "0,0,0": 0})


# --------------------------------------------------------------------------- npz

def test_npz_reads_grayscale_pairs(tmp_path):
    path = fakes.write_npz(tmp_path / "pairs.npz", n=6, size=(16, 32))
    data = load_dataset(str(path))

    assert len(data.images) == 6
    assert data.names == [f"{i:05d}" for i in range(6)]
    assert all(im.shape == (16, 32, 1) and im.dtype == np.uint8 for im in data.images)
    assert all(m.shape == (16, 32) and m.dtype == np.uint8 for m in data.masks)
    # classes inferred from the largest non-ignore label (2)
    assert data.classes == ("class_0", "class_1", "class_2")
    assert data.ignore_index == 255
    # bands of width 32 // 3 = 10: columns 0-9 | 10-19 | 20-31
    assert data.masks[4][8, 3] == 0 and data.masks[4][8, 15] == 1 and data.masks[4][8, 25] == 2
    assert data.masks[4][0, 0] == 255
    assert data.images[4][8, 15, 0] == 90     # 10*4 + 50*1


@pytest.mark.parametrize("image_key, mask_key", [("images", "masks"), ("X", "y"), ("image", "labels")])
def test_npz_of_separate_images_and_masks_arrays_reads_as_the_pairs_would(tmp_path, image_key, mask_key):
    stack = fakes.npz_stack(n=4, size=(16, 32))
    np.savez(tmp_path / "apart.npz", **{image_key: stack[:, 0], mask_key: stack[:, 1]})
    apart, paired = load_dataset(str(tmp_path / "apart.npz")), load_dataset(str(fakes.write_npz(tmp_path / "p.npz", n=4,
                                                                                              size=(16, 32))))
    assert apart.names == paired.names and apart.classes == paired.classes
    for ours, theirs in zip(apart.images + apart.masks, paired.images + paired.masks):
        np.testing.assert_array_equal(ours, theirs)
    np.savez(tmp_path / "odd.npz", images=stack[:, 0], masks=stack[:2, 1])      # 4 images, 2 masks: refused
    with pytest.raises(DataError, match="or \\(N, H, W\\) arrays named images and masks, found images\\(4, 16, 32\\), "
                                        "masks\\(2, 16, 32\\)"):
        load_dataset(str(tmp_path / "odd.npz"))


def test_npz_uses_configured_class_names(tmp_path):
    path = fakes.write_npz(tmp_path / "pairs.npz", n=2)
    data = load_dataset(str(path), classes=("bg", "cell", "membrane", "other"))
    assert data.classes == ("bg", "cell", "membrane", "other")


def test_npz_float_images_in_0_1_are_scaled_to_0_255(tmp_path):
    stack = fakes.npz_stack(n=2, size=(8, 12)).astype(np.float32)
    stack[:, 0] = 0.5
    stack[:, 0, 0, 0] = 1.0
    data = load_dataset(str(fakes.write_npz(tmp_path / "f.npz", array=stack)))
    assert data.images[0][0, 0, 0] == 255
    assert data.images[0][3, 3, 0] in (127, 128)
    assert data.masks[0][3, 5] == 1


def test_npz_resize(tmp_path):
    data = load_dataset(str(fakes.write_npz(tmp_path / "p.npz", n=3, size=(16, 32))), resize=(8, 20))
    assert all(im.shape == (8, 20, 1) for im in data.images)
    assert all(m.shape == (8, 20) for m in data.masks)
    assert set(np.unique(np.stack(data.masks)).tolist()) <= {0, 1, 2, 255}


@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (4, 8, 8), (2, 8, 8, 2)])
def test_npz_with_wrong_shape_is_a_data_error(tmp_path, shape):
    path = fakes.write_npz(tmp_path / "bad.npz", array=np.zeros(shape, np.uint8))
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    assert "(N, 2, H, W)" in str(info.value)
    assert str(shape) in str(info.value)          # says what it found


def test_npz_with_non_integer_mask_is_a_data_error(tmp_path):
    stack = fakes.npz_stack(n=3, size=(8, 12)).astype(np.float32)
    stack[1, 1, 4, 4] = 0.5
    with pytest.raises(DataError, match="non-integer"):
        load_dataset(str(fakes.write_npz(tmp_path / "f.npz", array=stack)))


def test_npz_class_out_of_range_lists_every_bad_row(tmp_path):
    stack = fakes.npz_stack(n=5, size=(8, 12))
    stack[1, 1, 5, 5] = 7
    stack[3, 1, 5, 5] = 9
    with pytest.raises(DataError) as info:
        load_dataset(str(fakes.write_npz(tmp_path / "p.npz", array=stack)), classes=CLASSES)
    where = [w for w, _ in info.value.problems]
    assert len(where) == 2
    assert where[0].endswith("[1]") and where[1].endswith("[3]")
    assert "[7]" in str(info.value) and "[9]" in str(info.value)


def test_npz_negative_class_index_is_out_of_range(tmp_path):
    # -1 must not wrap around to 255 and silently become "ignore" (or a huge class)
    stack = fakes.npz_stack(n=3, size=(8, 12)).astype(np.int16)
    stack[2, 1, 5, 5] = -1
    with pytest.raises(DataError) as info:
        load_dataset(str(fakes.write_npz(tmp_path / "p.npz", array=stack)), classes=CLASSES)
    assert [w for w, _ in info.value.problems] == [f"{tmp_path / 'p.npz'}[2]"]


@pytest.mark.parametrize("content", [b"", b"garbage, not numpy", b"PK\x03\x04 truncated zip"])
def test_unreadable_npz_is_a_data_error(tmp_path, content):
    path = fakes.write_garbage(tmp_path / "broken.npz", content)
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    assert "broken.npz" in str(info.value)


# --------------------------------------------------------------------------- synthetic

def test_synthetic_keyword():
    data = load_dataset("synthetic")
    reference = make_synthetic()
    assert data.names == reference.names and len(data.names) == 48
    assert data.classes == ("background", "plant", "stem", "rare")
    np.testing.assert_array_equal(data.masks[5], reference.masks[5])
    assert data.images[0].shape == (64, 64, 3)


def test_synthetic_data_is_resized_like_any_other():
    data = load_dataset("synthetic", resize=(96, 128))  # it was read at 64x64 whatever resize said
    assert data.images[0].shape == (96, 128, 3) and data.masks[0].shape == (96, 128)
    assert set(np.unique(data.masks[0])) == set(np.unique(make_synthetic().masks[0]))  # nearest: no blended index


# --------------------------------------------------------------------------- bad folders

def test_missing_mask_names_the_image(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=4)
    (root / "masks" / "img_02.png").unlink()
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert len(info.value.problems) == 1
    assert "missing mask" in problem_for(info.value, "images/img_02.png")


def test_mask_without_image_names_the_mask(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=3)
    fakes.write_png(root / "masks" / "orphan.png", fakes.index_mask((H, W)))
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert "no image" in problem_for(info.value, "masks/orphan.png")


def test_size_mismatch_names_the_mask_and_both_sizes(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=3)
    fakes.write_png(root / "masks" / "img_01.png", fakes.index_mask((30, 48)))
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    why = problem_for(info.value, "masks/img_01.png")
    assert "48x30" in why and "48x32" in why


def test_class_index_out_of_range_names_the_mask_and_value(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=3)
    mask = fakes.index_mask((H, W))
    mask[20, 20] = 5
    fakes.write_png(root / "masks" / "img_02.png", mask)
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    why = problem_for(info.value, "masks/img_02.png")
    assert "out of range" in why and "[5]" in why


def test_unreadable_image_is_named(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=3)
    fakes.write_garbage(root / "images" / "img_01.png")
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert len(info.value.problems) == 1
    assert "unreadable" in problem_for(info.value, "images/img_01.png")


def test_unreadable_mask_is_named_as_the_mask_not_its_image(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=3)
    fakes.write_garbage(root / "masks" / "img_01.png")
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert len(info.value.problems) == 1
    assert "unreadable" in problem_for(info.value, "masks/img_01.png")


def test_truncated_png_is_unreadable(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=2)
    path = root / "images" / "img_00.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert "unreadable" in problem_for(info.value, "images/img_00.png")


def test_index_mask_with_three_channels_is_a_data_error(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=2)
    fakes.write_png(root / "masks" / "img_01.png", fakes.colour_mask((H, W)))
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert "3 channels" in problem_for(info.value, "masks/img_01.png")


def test_mixed_grayscale_and_rgb_images_names_the_odd_one(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=4, channels=3)
    fakes.write_png(root / "images" / "img_02.png", fakes.image_for(2, (H, W), channels=1))
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert len(info.value.problems) == 1
    assert problem_for(info.value, "images/img_02.png") == ("is grayscale (1 channel(s)) while most images are RGB; "
                                                            "save it as RGB like the rest (a model takes one number of "
                                                            "channels)")


def test_empty_images_folder(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.json").write_text(json.dumps({"names": list(CLASSES)}))
    (root / "images" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(str(root))


def test_missing_images_and_masks_folders_are_both_listed(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    where = sorted(w for w, _ in info.value.problems)
    assert where == [str(root / "images"), str(root / "masks")]
    assert all(why == "folder missing" for _, why in info.value.problems)


def test_missing_masks_folder(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=2)
    for p in (root / "masks").iterdir():
        p.unlink()
    (root / "masks").rmdir()
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert info.value.problems == [(str(root / "masks"), "folder missing")]
    (root / "Labels").mkdir()      # the masks under another name: the message says which folders there are
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert info.value.problems == [(str(root / "masks"), f"folder missing; {root} holds Labels/: rename (or link) "
                                                         "the one meant to masks/")]


def test_nonexistent_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(tmp_path / "nowhere"))


def test_plain_file_that_is_not_npz(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n")
    with pytest.raises(DataError, match="neither a folder nor an .npz"):
        load_dataset(str(path))


def test_data_error_is_a_value_error_with_structured_problems(tmp_path):
    with pytest.raises(ValueError) as info:
        load_dataset(str(tmp_path / "nowhere"))
    assert isinstance(info.value, DataError)
    assert info.value.source == str(tmp_path / "nowhere")
    assert isinstance(info.value.problems, list) and len(info.value.problems) == 1


def test_one_error_lists_every_bad_file_with_its_reason(tmp_path):
    """Five different problems in one dataset: all reported together, good files not reported."""
    root = fakes.write_index_folder(tmp_path / "ds", n=8)
    (root / "masks" / "img_01.png").unlink()                                          # missing mask
    fakes.write_png(root / "masks" / "img_03.png", fakes.index_mask((20, 48)))       # size mismatch
    fakes.write_garbage(root / "images" / "img_05.png")                              # unreadable
    bad = fakes.index_mask((H, W))
    bad[3, 30] = 9
    fakes.write_png(root / "masks" / "img_06.png", bad)                              # out of range
    fakes.write_png(root / "masks" / "stray.png", fakes.index_mask((H, W)))          # no image

    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    error = info.value
    message = str(error)
    assert len(error.problems) == 5
    assert message.startswith("5 problem(s) in dataset")
    assert "missing mask" in problem_for(error, "images/img_01.png")
    assert "differs" in problem_for(error, "masks/img_03.png")
    assert "unreadable" in problem_for(error, "images/img_05.png")
    assert "out of range" in problem_for(error, "masks/img_06.png")
    assert "no image" in problem_for(error, "masks/stray.png")
    for name in ("img_01", "img_03", "img_05", "img_06", "stray"):
        assert name in message
    for good in ("img_00", "img_02", "img_04", "img_07"):
        assert good not in message


def test_two_problems_in_a_colour_folder_are_reported_together(tmp_path):
    root = fakes.write_colour_folder(tmp_path / "ds", n=4)
    odd = fakes.colour_mask((H, W))
    odd[0, 0] = (9, 9, 9)
    fakes.write_png(root / "masks" / "img_00.png", odd)                               # unknown colour
    fakes.write_png(root / "masks" / "img_02.png", fakes.colour_mask((H, 40)))       # size mismatch
    with pytest.raises(DataError) as info:
        load_dataset(str(root), classes=CLASSES, colour_map=COLOUR_MAP)
    message = str(info.value)
    assert len(info.value.problems) == 2
    assert "img_00.png" in message and "(9,9,9)" in message
    assert "img_02.png" in message and "differs" in message


# --------------------------------------------------------------------------- lossy masks

def jpeg_round_trip(array: np.ndarray, quality: int = 90) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


@pytest.mark.parametrize("quality", [75, 95])
def test_jpeg_compressed_index_mask_saved_as_png_is_called_lossy(tmp_path, quality):
    root = fakes.write_index_folder(tmp_path / "ds", n=3)
    fakes.write_png(root / "masks" / "img_01.png", jpeg_round_trip(fakes.index_mask((H, W)), quality))
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    why = problem_for(info.value, "masks/img_01.png")
    assert "looks JPEG-compressed" in why and "losslessly as PNG" in why and "out of range" not in why


def test_jpeg_smear_between_far_apart_classes_is_called_lossy_though_every_value_is_a_class(tmp_path):
    # classes 0 | 5 | 10 of 16: the smeared values 1-4 and 6-9 are all valid class indices, so no range check sees them;
    # the bands are shifted 4 columns so that their edges cross JPEG's 8x8 blocks
    root = fakes.write_index_folder(tmp_path / "ds", n=3, classes=tuple(f"c{i}" for i in range(16)))
    smeared = jpeg_round_trip(np.roll(fakes.class_layout((H, W)) * 5, 4, axis=1))
    assert set(np.unique(smeared)) > {0, 5, 10} and smeared.max() < 16
    fakes.write_png(root / "masks" / "img_02.png", smeared)
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert "looks JPEG-compressed" in problem_for(info.value, "masks/img_02.png")


def test_mask_saved_as_jpeg_is_refused(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=3)
    (root / "masks" / "img_00.png").unlink()
    Image.fromarray(fakes.index_mask((H, W))).save(root / "masks" / "img_00.jpg", quality=100)
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert "saved as JPEG" in problem_for(info.value, "masks/img_00.jpg")


def test_jpeg_compressed_colour_mask_is_called_lossy_not_missing_colours(tmp_path):
    root = fakes.write_colour_folder(tmp_path / "ds", n=3)
    fakes.write_png(root / "masks" / "img_01.png", jpeg_round_trip(fakes.colour_mask((H, W))))
    with pytest.raises(DataError) as info:
        load_dataset(str(root), classes=CLASSES, colour_map=COLOUR_MAP)
    why = problem_for(info.value, "masks/img_01.png")
    assert "looks JPEG-compressed" in why and "colours not in colour_map" in why and "add them" not in why


@pytest.mark.parametrize("name", ["cwfid", "camvid", "isbi2012_membrane"])
def test_clean_shared_datasets_are_not_called_lossy(name):
    root = Path(__file__).resolve().parents[3] / "shared" / "datasets" / name
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    data = load_dataset(str(root), resize=(64, 96))
    assert len(data.masks) > 20


# --------------------------------------------------------------------------- ambiguous input

@pytest.mark.parametrize("folder", ["images", "masks"])
def test_same_stem_as_png_and_jpg_names_both_files(tmp_path, folder):
    root = fakes.write_index_folder(tmp_path / "ds", n=3)
    Image.open(root / folder / "img_01.png").save(root / folder / "img_01.jpg")
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    why = problem_for(info.value, f"{folder}/img_01.png")
    assert "img_01.jpg" in why and "keep only one" in why


def test_npz_with_two_pair_arrays_names_both_keys(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, first=fakes.npz_stack(n=2), second=fakes.npz_stack(n=3))
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    assert "first(2, 2, 16, 32)" in str(info.value) and "second(3, 2, 16, 32)" in str(info.value)
    assert "exactly one" in str(info.value)


def test_npy_renamed_npz_is_a_data_error(tmp_path):
    np.save(tmp_path / "pairs.npy", fakes.npz_stack(n=2))
    (tmp_path / "pairs.npy").rename(tmp_path / "pairs.npz")
    with pytest.raises(DataError) as info:
        load_dataset(str(tmp_path / "pairs.npz"))
    assert "pairs.npz" in str(info.value) and "bare array" in str(info.value) and "numpy.savez" in str(info.value)


# --------------------------------------------------------------------------- classes

@pytest.mark.parametrize("text, expected", [
    ('{"names": ["a", "b",]}', "is not valid JSON"),
    ('{"classes": ["a", "b"]}', 'has no "names"'),
    ('{"names": "bgw"}', '"names": "bgw"'),
    ('["background", "crop"]', 'has no "names"'),
    ('{"names": ["a", 2]}', "must be a list of class names"),
    ('{"names": []}', "has 0 class(es)"),
    ('{"names": ["a", "b", "a"]}', "['a'] appear more than once"),
    ('{"names": ["a", "b"], "ignore_index": "255"}', "must be an integer or null"),
])
def test_bad_classes_json_is_a_data_error_naming_it(tmp_path, text, expected):
    root = fakes.write_index_folder(tmp_path / "ds", n=2)
    (root / "classes.json").write_text(text)
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert expected in problem_for(info.value, "classes.json")


def test_bad_classes_json_through_inspect_prints_the_message(tmp_path, capsys):
    from segtune.inspect.run import main

    root = fakes.write_index_folder(tmp_path / "ds", n=2)
    (root / "classes.json").write_text('{"names": "bgw"}')
    assert main([str(root), "--output", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert "classes.json" in err and "must be a list of class names" in err and "Traceback" not in err
    assert not (tmp_path / "report").exists()


def test_classes_option_given_as_one_string_is_refused(tmp_path):
    root = fakes.write_colour_folder(tmp_path / "ds", n=2)
    with pytest.raises(DataError, match="'bgw' must be a list of class names"):
        load_dataset(str(root), classes="bgw", colour_map=COLOUR_MAP)


def test_one_class_is_refused_naming_where_the_classes_came_from(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=2, with_ignore_pixels=False)
    for i in range(2):
        fakes.write_png(root / "masks" / f"{image_id(i)}.png", np.zeros((H, W), np.uint8))
    (root / "classes.json").write_text('{"names": ["background"]}')
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert "segmentation needs at least 2" in problem_for(info.value, "classes.json")
    with pytest.raises(DataError) as info:
        load_dataset(str(fakes.write_npz(tmp_path / "p.npz", array=np.zeros((2, 2, 8, 8), np.uint8))))
    [(where, why)] = info.value.problems
    assert where.startswith("option classes") and "at least 2" in why


def test_ignore_index_equal_to_a_class_index_is_refused(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=2, ignore_index=1)
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    why = problem_for(info.value, "classes.json")
    assert "ignore_index 1 is the index of class 'crop'" in why and "drop that class" in why
    colour = fakes.write_colour_folder(tmp_path / "colour", n=2)
    with pytest.raises(DataError) as info:
        load_dataset(str(colour), classes=CLASSES, colour_map=COLOUR_MAP, ignore_index=2)
    assert info.value.problems[0][0] == "option ignore_index"


@pytest.mark.parametrize("colour_map, expected", [
    (["0,0,0", "255,255,255"], "must be a mapping 'R,G,B': class index, got a list"),
    (dict(COLOUR_MAP, **{"216,67,82": 300}), "216,67,82 -> 300"),
    (dict(COLOUR_MAP, **{"216,67,82": -1}), "216,67,82 -> -1"),
    (dict(COLOUR_MAP, **{"216,67,82": "two"}), "maps to 'two', not a class index"),
])
def test_bad_colour_map_is_a_data_error_naming_the_option(tmp_path, colour_map, expected):
    root = fakes.write_colour_folder(tmp_path / "ds", n=2)
    with pytest.raises(DataError) as info:
        load_dataset(str(root), classes=CLASSES, colour_map=colour_map)
    [(where, why)] = info.value.problems
    assert where == "colour_map" and expected in why


# --------------------------------------------------------------------------- one class, 0/255 binary masks
def _binary_folder(root, n=4):
    """Grey images and masks saved as 0/255 (the common binary export), a 4 x 6 object of 255 in each."""
    for i in range(n):
        mask = np.zeros((16, 24), np.uint8)
        mask[4:8, i:i + 6] = 255
        fakes.write_png(root / "images" / f"{fakes.image_id(i)}.png", (mask // 2 + 20).astype(np.uint8))
        fakes.write_png(root / "masks" / f"{fakes.image_id(i)}.png", mask)
    return root


def test_binary_masks_saved_as_0_255_are_refused_naming_the_fix_not_read_as_all_background(tmp_path):
    root = _binary_folder(tmp_path / "cells")
    with pytest.raises(DataError) as info:      # 255 is the ignore index: every object pixel would be left out
        load_dataset(str(root), classes=("background", "object"))
    [(where, why)] = info.value.problems
    assert where == str(root / "masks")
    assert "every labelled pixel is class 0 ('background')" in why and "6.2% of pixels hold 255" in why  # 24 of 384
    assert '--colour-map "0=0;255=1"' in why
    with pytest.raises(DataError) as info:      # no ignore index: 255 is out of range, with the same fix
        load_dataset(str(root), classes=("background", "object"), ignore_index=None)
    assert all("class index [255] out of range 0..1; binary masks saved as 0/255?" in why
               for _, why in info.value.problems) and len(info.value.problems) == 4


def test_grey_values_map_to_classes_on_single_channel_masks(tmp_path):
    root = _binary_folder(tmp_path / "cells")
    data = load_dataset(str(root), classes=("background", "object"), colour_map={"0": 0, "255": 1})
    assert [int((m == 1).sum()) for m in data.masks] == [24] * 4
    assert all(set(np.unique(m)) == {0, 1} for m in data.masks)
    with pytest.raises(DataError, match="colours that are not grey"):
        load_dataset(str(root), classes=("background", "object"), colour_map={"0": 0, "255,0,0": 1})
    with pytest.raises(DataError, match="colour\\(s\\) not in colour_map: \\(255,255,255\\)"):
        load_dataset(str(root), classes=("background", "object"), colour_map={"0": 0})


def test_a_dataset_of_one_labelled_class_is_refused(tmp_path):
    root = tmp_path / "flat"
    for i in range(3):
        fakes.write_png(root / "images" / f"{fakes.image_id(i)}.png", np.full((16, 16), 10 * i, np.uint8))
        fakes.write_png(root / "masks" / f"{fakes.image_id(i)}.png", np.ones((16, 16), np.uint8))
    with pytest.raises(DataError, match="every labelled pixel is class 1 \\('b'\\).*check the masks"):
        load_dataset(str(root), classes=("a", "b", "c"))
    pairs = np.zeros((3, 2, 8, 8), np.uint8)
    pairs[:, 1, :4] = 255               # half the pixels on the ignore index, the rest class 0
    np.savez(tmp_path / "tiles.npz", pairs=pairs)
    with pytest.raises(DataError, match="every labelled pixel is class 0 \\('a'\\).*50.0% of pixels hold 255"):
        load_dataset(str(tmp_path / "tiles.npz"), classes=("a", "b"))


# --------------------------------------------------------------------------- masks named with a suffix
@pytest.mark.parametrize("image_name, mask_name, paired_as", [
    ("{}.png", "{}_mask.png", "{}"),             # a_mask.png with a.png
    ("{}_sat.png", "{}_mask.png", "{}"),         # DeepGlobe: 123_sat.jpg with 123_mask.png
    ("{}.png", "{}_segmentation.png", "{}"),     # ISIC: ISIC_0000000_segmentation.png
])
def test_masks_named_after_their_images_plus_one_suffix_pair_up(tmp_path, image_name, mask_name, paired_as):
    root = fakes.write_index_folder(tmp_path / "ds", n=3)
    for i in range(3):
        stem = fakes.image_id(i)
        (root / "images" / f"{stem}.png").rename(root / "images" / image_name.format(stem))
        mask = np.array(Image.open(root / "masks" / f"{stem}.png"))
        (root / "masks" / f"{stem}.png").unlink()
        Image.fromarray(mask).save(root / "masks" / mask_name.format(stem))
    data = load_dataset(str(root))
    assert data.names == [paired_as.format(fakes.image_id(i)) for i in range(3)]
    reference = load_dataset(str(fakes.write_index_folder(tmp_path / "plain", n=3)))
    for ours, theirs in zip(data.masks + data.images, reference.masks + reference.images):
        np.testing.assert_array_equal(ours, theirs)


def test_names_that_pair_only_in_part_are_not_trimmed_and_each_unpaired_file_is_named(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=3)
    (root / "masks" / "img_02.png").rename(root / "masks" / "img_02_mask.png")    # two pair by name, one does not
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert sorted(where for where, _ in info.value.problems) == [str(root / "images" / "img_02.png"),
                                                                 str(root / "masks" / "img_02_mask.png")]


def test_a_grey_map_reads_masks_whose_zero_means_unlabelled(tmp_path):
    root = tmp_path / "ade"          # ADE20K-style: 0 unlabelled, classes from 1
    mask = np.zeros((16, 16), np.uint8)
    mask[4:, :8], mask[4:, 8:] = 1, 2
    for i in range(2):
        fakes.write_png(root / "images" / f"{fakes.image_id(i)}.png", np.full((16, 16), 30 * i, np.uint8))
        fakes.write_png(root / "masks" / f"{fakes.image_id(i)}.png", mask)
    data = load_dataset(str(root), classes=("wall", "floor"), colour_map={"0": 255, "1": 0, "2": 1})
    expected = np.full((16, 16), 255, np.uint8)
    expected[4:, :8], expected[4:, 8:] = 0, 1
    assert all((m == expected).all() for m in data.masks)
