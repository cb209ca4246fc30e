"""`segtune inspect`: every format, the files it writes, the exclusion list fed back, bad input."""

from __future__ import annotations

import json

import pytest

import fakes
from fakes import COLOUR_MAP, NEAR_DUPLICATE, OUTLIER
from segtune.cli import main as segtune_main
from segtune.data import DataError, SPLITS, exclude_images, load_dataset, make_splits, make_synthetic
from segtune.inspect import inspect_dataset
from segtune.inspect.run import main


@pytest.fixture(scope="module")
def inspected(tmp_path_factory):
    """The inspection fixture, inspected once through the command."""
    root = fakes.write_inspection_folder(tmp_path_factory.mktemp("ds") / "ds")
    out = tmp_path_factory.mktemp("out") / "report"
    assert main([str(root), "--output", str(out), "--crop", "32x32", "--depth", "4"]) == 0
    return root, out


def test_command_writes_report_json_exclusions_and_contact_sheets(inspected):
    _, out = inspected
    report = json.loads((out / "report.json").read_text())
    sheets = report["files"]["contact_sheets"]
    assert [p.rsplit("/", 1)[-1] for p in sheets["near_duplicates"]] == ["near_duplicates_01.png"]
    assert [p.rsplit("/", 1)[-1] for p in sheets["identical_masks"]] == ["identical_masks_01.png"]
    assert [p.rsplit("/", 1)[-1] for p in sheets["outliers"]] == ["outliers.png"]
    assert all((out / "contact_sheets" / name).stat().st_size > 1000
               for name in ("near_duplicates_01.png", "identical_masks_01.png", "outliers.png"))
    text = (out / "report.txt").read_text()
    assert "img_02, img_05" in text and "img_02 (train); img_05 (test)" in text
    # 64 x 64 images, tile 32, overlap 8: starts 0, 24, then 64 - 32 = 32 -> 3 tiles per axis
    assert report["tiling"]["plans"][0]["tiles"] == [3, 3]
    assert report["depth"]["sizes"][0]["fits"]


def test_exclusion_list_round_trip_leaves_ids_out_of_every_split(inspected):
    root, out = inspected
    lines = (out / "exclusions.txt").read_text().splitlines()
    assert any(line.startswith(f"{NEAR_DUPLICATE[1]} ") and "# near-duplicate of img_02" in line for line in lines)
    data, excluded = exclude_images(load_dataset(str(root)), out / "exclusions.txt")
    assert NEAR_DUPLICATE[1] in excluded and OUTLIER in excluded
    splits = make_splits(data, 0.15, 0.15, seed=0)
    kept = {i for s in SPLITS for i in splits[s]}
    assert not kept & set(excluded)
    assert kept == set(fakes.INSPECT_IDS) - set(excluded)


def test_every_format_is_inspected(tmp_path):
    colour = load_dataset(str(fakes.write_colour_folder(tmp_path / "colour", n=4)), colour_map=COLOUR_MAP)
    npz = load_dataset(str(fakes.write_npz(tmp_path / "t.npz", n=5)), classes=fakes.CLASSES)
    for data, count in ((colour, 4), (npz, 5), (make_synthetic(), 48)):
        report = inspect_dataset(data)
        assert report["images"] == count and len(report["class_table"]) == data.num_classes
    # fakes' pictures are one layout at different brightness: a perceptual hash calls them one group
    assert [g["ids"] for g in inspect_dataset(npz)["near_duplicates"]["groups"]] == [npz.names]
    assert inspect_dataset(make_synthetic())["rare_classes"] == ["rare"]


def test_bad_input_is_reported_as_the_readers_report_it(tmp_path, capsys):
    root = fakes.write_index_folder(tmp_path / "ds", n=3)
    fakes.write_garbage(root / "images" / "img_00.png")
    fakes.write_garbage(root / "masks" / "img_02.png")
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert main([str(root), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(info.value) in err and "img_00.png" in err and "img_02.png" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, value, message", [("--duplicate-correlation", "1.5", "'1.5' is not a correlation"),
                                                     ("--hash-threshold", "300", "'300' is not a number of bits")])
def test_duplicate_options_out_of_range_are_refused_naming_the_option(tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["synthetic", option, value, "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"argument {option}: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_segtune_command_dispatches_to_inspect(capsys):
    with pytest.raises(SystemExit) as exit_info:
        segtune_main(["inspect", "--help"])
    assert exit_info.value.code == 0 and "--hash-threshold" in capsys.readouterr().out
