"""`segtune inspect` on RGB colour masks given no colour map: their colours, shares and images, lossy masks
named as such, and a --colour-map / YAML colour_map that reads the folder when fed back."""

from __future__ import annotations

import re

import yaml
from PIL import Image

import fakes
from fakes import BLACK, ORANGE, RED, WHITE
from segtune.data import load_dataset
from segtune.inspect.colours import count_colours
from segtune.inspect.run import colour_map_argument, main

H, W = 32, 48   # fakes' colour masks: thirds of 16 columns; black over orange in the first (rows 0-15 | 16-31)


def test_colours_are_counted_with_their_share_and_images(tmp_path):
    root = fakes.write_colour_folder(tmp_path / "field", n=4, folders=("Images", "Masks"))
    colours = count_colours(sorted((root / "Masks").iterdir()))
    # each 32 x 48 mask (1536 px): red and white a band of 16 columns, 512 px = 1/3 each; black and orange
    # half of the first band each, 16 x 16 = 256 px = 1/6; every mask holds all four
    assert [(c.rgb, c.pixels, round(c.share, 6), c.images) for c in colours] == [
        (RED, 4 * 512, 0.333333, 4), (WHITE, 4 * 512, 0.333333, 4),
        (BLACK, 4 * 256, 0.166667, 4), (ORANGE, 4 * 256, 0.166667, 4)]


def test_inspect_lists_the_colours_and_prints_a_colour_map_that_reads_the_folder(tmp_path, capsys):
    root = fakes.write_colour_folder(tmp_path / "field", n=4, folders=("Images", "Masks"))
    assert main([str(root), "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"216,67,82 +33\.333% +4/4", out) and re.search(r"255,128,0 +16\.667% +4/4", out)
    assert "look lossy" not in out
    flag, classes = re.search(r'--colour-map "([^"]+)" --classes (\S+)', out).groups()
    colour_map = colour_map_argument(flag)
    yaml_block = out[out.index("  colour_map:"):]
    assert yaml.safe_load(yaml_block)["colour_map"] == colour_map   # the flag and the YAML say the same
    assert classes == "background,class_1,class_2,class_3"
    data = load_dataset(str(root), classes=tuple(classes.split(",")), colour_map=colour_map)
    # black is guessed as background (0); the others follow in share order: red 1, white 2, orange 3
    mask = data.masks[0]
    assert [mask[2, 5], mask[H - 3, 5], mask[10, 24], mask[10, 40]] == [0, 3, 2, 1]
    assert data.names == [fakes.image_id(i) for i in range(4)]


def test_masks_with_many_colours_are_called_lossy(tmp_path, capsys):
    root = fakes.write_lossy_colour_folder(tmp_path / "field")
    assert main([str(root), "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "These masks look lossy" in out and "looks JPEG-compressed" in out and "more colours" in out
    assert "--colour-map" not in out and "run `segtune inspect" in out


def test_masks_saved_as_jpeg_are_named(tmp_path, capsys):
    root = fakes.write_colour_folder(tmp_path / "field", n=2)
    for path in list((root / "masks").iterdir()):
        Image.fromarray(fakes.colour_mask((H, W))).save(path.with_suffix(".jpg"), quality=100)
        path.unlink()
    assert main([str(root), "--output", str(tmp_path / "out")]) == 0
    assert "2 are saved as JPEG" in capsys.readouterr().out
