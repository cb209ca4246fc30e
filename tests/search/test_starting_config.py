"""`segtune init DATA`: the starting search config it writes loads through load_config with the values the
data calls for; it refuses to overwrite; and a search on colour masks without a colour map says so once."""

from __future__ import annotations

import numpy as np
import pytest

import fakes
from fakes import CLASSES, COLOUR_MAP, IGNORE
from search.config import load_config
from search.fixed import fixed_trial_params
from search.run import main as search_main
from search.starting_config import _resize
from segtune.cli import main as segtune_main
from segtune.data import exclude_images, load_dataset, read_exclusions
from segtune.inspect import inspect_dataset
from spaces import get_space
from spaces.overrides import validate_space


def init(capsys, *argv) -> tuple[int, str]:
    code = segtune_main(["init", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_sizes_are_halved_until_the_long_side_fits_and_rounded_to_32():
    assert _resize((1536, 2048)) == (768, 1024)      # 2048 / 2 = 1024
    assert _resize((966, 1296)) == (480, 640)        # 483 -> 15.1 x 32 = 480; 648 -> 20.25 x 32 = 640
    assert _resize((3000, 4000)) == (736, 992)       # / 4: 750 -> 23.4 x 32 = 736; 1000 -> 31.25 x 32 = 992
    assert _resize((768, 1024)) is None


def test_colour_mask_folder_with_capitalised_folders(tmp_path, capsys):
    root = fakes.write_colour_folder(tmp_path / "field", n=6, folders=("Images", "Masks"))
    output = tmp_path / "configs" / "search.yaml"
    code, said = init(capsys, root, "--output", output)
    assert code == 0, said
    text = output.read_text()
    assert all("#" in line for line in text.splitlines())   # every line says what it is and why
    cfg = load_config(str(output))
    assert cfg.data == str(root.resolve())
    assert cfg.classes == ("background", "class_1", "class_2", "class_3")
    # black first as background, then by pixel share: red and white (1/3 each), orange (1/6)
    assert cfg.colour_map == {"0,0,0": 0, "216,67,82": 1, "255,255,255": 2, "255,128,0": 3}
    assert cfg.ignore_index == IGNORE and cfg.resize is None
    assert cfg.crop == (32, 32)                       # 32 x 48 images: each side rounded down to 32
    assert cfg.exclude_from_mean == ()                # largest class: a third of the pixels
    assert cfg.space == "crop_weed"                   # RGB, 4 classes
    # fakes' pictures are one layout at six brightnesses: inspect keeps img_00 and proposes the rest
    assert cfg.exclude_file == str(output.parent / "exclusions.txt")
    assert sorted(read_exclusions(cfg.exclude_file)) == [fakes.image_id(i) for i in range(1, 6)]
    data = load_dataset(cfg.data, classes=cfg.classes, colour_map=cfg.colour_map, ignore_index=cfg.ignore_index)
    data, excluded = exclude_images(data, cfg.exclude_file)
    assert data.names == ["img_00"] and len(excluded) == 5


def test_a_colour_map_and_classes_given_are_written_as_given(tmp_path, capsys):
    root = fakes.write_colour_folder(tmp_path / "field", n=3)
    output = tmp_path / "search.yaml"
    given = "0,0,0=0;255,128,0=0;255,255,255=1;216,67,82=2"     # orange merged into background
    code, said = init(capsys, root, "--output", output, "--colour-map", given, "--classes", ",".join(CLASSES))
    assert code == 0, said
    cfg = load_config(str(output))
    assert cfg.colour_map == COLOUR_MAP and cfg.classes == CLASSES
    assert '"255,128,0":     0    # background, as --colour-map gave' in output.read_text()


def test_large_grayscale_index_folder_with_dominant_background(tmp_path, capsys):
    root = fakes.write_index_folder(tmp_path / "tiles", n=4, size=(40, 1100), channels=1)
    mask = np.zeros((40, 1100), np.uint8)
    mask[:, 900:1000], mask[:, 1000:], mask[0:2, 0:2] = 1, 2, IGNORE    # background 900 of 1100 columns: 82 %
    for i in range(4):
        fakes.write_png(root / "masks" / f"{fakes.image_id(i)}.png", mask)
    output = tmp_path / "search.yaml"
    code, said = init(capsys, root, "--output", output)
    assert code == 0, said
    cfg = load_config(str(output))
    assert cfg.classes is None and "classes.json" in output.read_text()    # classes.json is read, not copied
    assert cfg.ignore_index == IGNORE
    assert cfg.resize == (32, 544)        # long side 1100 > 1024: halved to 20 x 550, rounded to 32 x 544
    assert cfg.crop == (32, 256)          # within 32 x 544, at most 256
    assert cfg.exclude_from_mean == ("background",)
    assert cfg.space == "terrain"         # grayscale
    assert cfg.grace_period == 3          # ASHA judges trials after the space's loss warm-up: the search takes it
    data = load_dataset(cfg.data, ignore_index=cfg.ignore_index)
    fixed = fixed_trial_params(cfg, data, {"train": list(data.names)}).as_dict()
    validate_space(get_space(cfg.space, cfg.space_overrides), cfg.space_overrides, fixed, cfg.grace_period)
    proposed = inspect_dataset(load_dataset(str(root)))["exclusions"]
    assert proposed and sorted(read_exclusions(cfg.exclude_file)) == sorted(proposed)


def test_existing_output_is_refused_unless_forced(tmp_path, capsys):
    root = fakes.write_index_folder(tmp_path / "ds", n=4)
    output = tmp_path / "search.yaml"
    output.write_text("mine: keep\n")
    code, said = init(capsys, root, "--output", output)
    assert code == 2 and f"segtune init: {output} exists" in said and "--force" in said
    assert output.read_text() == "mine: keep\n" and not (tmp_path / "exclusions.txt").exists()
    code, said = init(capsys, root, "--output", output, "--force")
    assert code == 0 and load_config(str(output)).classes is None


def test_lossy_colour_masks_are_refused_and_nothing_is_written(tmp_path, capsys):
    root = fakes.write_lossy_colour_folder(tmp_path / "field")
    code, said = init(capsys, root, "--output", tmp_path / "search.yaml")
    assert code == 2 and "looks JPEG-compressed" in said and "nothing written" in said
    assert not (tmp_path / "search.yaml").exists() and not (tmp_path / "exclusions.txt").exists()


def test_search_on_colour_masks_without_a_colour_map_says_so_once(tmp_path, capsys):
    root = fakes.write_colour_folder(tmp_path / "field", n=6, folders=("Images", "Masks"))
    assert search_main(["--data", str(root), "--classes", ",".join(CLASSES),
                        "--storage-path", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "channels" not in err      # one message, not one per mask
    assert f"{root / 'Masks'} holds RGB colour masks (6 of 6 masks)" in err and f"segtune inspect {root}" in err
    assert not list((tmp_path / "results").glob("*/config.yaml"))


def test_segtune_lists_and_dispatches_init(capsys):
    assert segtune_main(["--help"]) == 0 and "init     write a starting search config" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        segtune_main(["init", "--help"])
    assert exit_info.value.code == 0 and "--force" in capsys.readouterr().out
