"""One tiling rule: hand-worked tile starts, and the plan `segtune inspect` prints is the grid `segtune predict` cuts."""

from __future__ import annotations

import itertools

import numpy as np

from ensembles.predict import predict_image
from segtune.data import make_synthetic
from segtune.inspect import inspect_dataset
from segtune.inspect.report import format_report
from segtune.tiling import network_tile, overlap_pixels, tile_starts, tiling_plan, tiling_plans


def test_tiles_step_by_tile_minus_overlap_and_the_last_sits_flush():
    # 1296 px, tile 256, stride 192: 0, 192, ..., 960 (960 + 256 = 1216 < 1296), then 1296 - 256 = 1040
    assert tile_starts(1296, 256, 192) == [0, 192, 384, 576, 768, 960, 1040]
    assert tile_starts(448, 256, 192) == [0, 192]  # 192 + 256 = 448: already flush
    assert tile_starts(200, 256, 192) == [0]  # shorter than a tile: one (padded) tile


def test_overlap_is_a_share_of_the_tile_below_a_whole_tile():
    # 256 * 0.25 = 64; 32 * 0.25 = 8; 64 * 0.99 = 63.36 -> 63, and never the whole tile
    assert [overlap_pixels(256, 0.25), overlap_pixels(32, 0.25), overlap_pixels(64, 0.99)] == [64, 8, 63]


def test_tiling_plan_of_a_crop_weed_photo():
    # rows 966: 0, 192, 384, 576, then 710 (overlap 576 + 256 - 710 = 122); columns 1296 as above: 5 x 7 = 35
    plan = tiling_plan((966, 1296), (256, 256), 0.25)
    assert plan["starts"] == [[0, 192, 384, 576, 710], [0, 192, 384, 576, 768, 960, 1040]]
    assert plan["tiles"] == [5, 7] and plan["tiles_per_image"] == 35
    assert plan["overlap"] == [64, 64] and plan["padded"] == [0, 0]


def test_only_images_larger_than_the_tile_get_a_plan():
    # 300 rows: 0, then 300 - 256 = 44; 100 columns fit in one tile padded by 156
    plans = tiling_plans([(64, 64), (300, 100), (300, 100)], (256, 256), 0.25)
    assert len(plans) == 1
    assert plans[0]["images"] == 2 and plans[0]["starts"] == [[0, 44], [0]] and plans[0]["padded"] == [0, 156]


def test_bundle_tile_is_the_crop_rounded_up_to_the_network_multiple():
    assert network_tile((192, 250)) == [192, 256]


class RecordingBundle:
    """A network that notes where each tile it is given came from (its top-left pixel encodes y and x)."""

    def __init__(self, tile, overlap):
        self.manifest = {"tile": tile, "overlap": overlap, "in_channels": 3, "classes": ["a", "b"],
                         "input_scale": None, "any_size": False}
        self.corners = []

    def predict(self, tiles):
        corner = tiles[:, :, 0, 0].astype(int)
        self.corners += [(int(c[2] // 16 * 256 + c[0]), int(c[2] % 16 * 256 + c[1])) for c in corner]
        return np.full((len(tiles), 2, *tiles.shape[2:]), 0.5, np.float32)


def coordinate_image(height: int, width: int) -> np.ndarray:
    """Channels y % 256, x % 256 and 16 * (y // 256) + x // 256: every pixel says where it is."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([y % 256, x % 256, y // 256 * 16 + x // 256], -1).astype(np.uint8)


def test_the_plan_inspect_prints_is_the_grid_predict_cuts():
    report = inspect_dataset(make_synthetic(count=8, height=150, width=300), crop=(64, 64))
    tiling = report["tiling"]
    plan = tiling["plans"][0]
    # rows 150, tile 64, stride 48: 0, 48, then 86; columns 300: 0, 48, ..., 192, then 236 -> 3 x 6
    assert plan["starts"] == [[0, 48, 86], [0, 48, 96, 144, 192, 236]]
    assert "150 x 300 (8 images): 3 x 6 = 18 tiles per image" in format_report(report)
    bundle = RecordingBundle(tiling["tile"], tiling["overlap"])
    predict_image(bundle, coordinate_image(150, 300), batch_size=5)
    assert bundle.corners == list(itertools.product(*plan["starts"]))
