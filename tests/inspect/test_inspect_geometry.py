"""Sizes against 2**depth, and tiling plans, against hand-worked numbers."""

from __future__ import annotations

import pytest

from segtune.inspect.geometry import axis_tiles, depth_fit, tiling_plan, tiling_plans


def test_depth_fit_pads_or_crops_to_multiples():
    # depth 5 -> multiples of 32. 288 = 9*32, 384 = 12*32 fit. 966 -> 31*32 = 992 (+26) or 30*32 = 960;
    # 1296 -> 41*32 = 1312 (+16) or 40*32 = 1280
    fits = depth_fit([(966, 1296), (288, 384), (966, 1296)], depth=5)
    assert fits[0] == {"size": [966, 1296], "images": 2, "fits": False, "pad_to": [992, 1312], "pad": [26, 16],
                       "crop_to": [960, 1280]}
    assert fits[1]["size"] == [288, 384] and fits[1]["fits"] and fits[1]["pad"] == [0, 0]


def test_axis_tiles_cover_with_at_least_the_overlap():
    # 1296 px, tile 256, overlap >= 32: n = ceil((1296-32)/(256-32)) = ceil(5.64) = 6;
    # starts i*(1296-256)//5 = 0, 208, 416, 624, 832, 1040 -> overlap 256-208 = 48
    assert axis_tiles(1296, 256, 32) == [0, 208, 416, 624, 832, 1040]
    # 966 px: n = ceil(934/224) = 5; starts i*710//4 = 0, 177, 355, 532, 710 -> overlap 256-178 = 78
    assert axis_tiles(966, 256, 32) == [0, 177, 355, 532, 710]
    assert axis_tiles(200, 256, 32) == [0]
    with pytest.raises(ValueError, match="overlap"):
        axis_tiles(1000, 256, 256)


def test_tiling_plan_of_a_crop_weed_photo():
    plan = tiling_plan((966, 1296), (256, 256), 32)
    assert plan["tiles"] == [5, 6] and plan["tiles_per_image"] == 30
    assert plan["overlap"] == [78, 48] and plan["padded"] == [0, 0]


def test_only_images_larger_than_the_crop_get_a_plan():
    plans = tiling_plans([(64, 64), (300, 100), (300, 100)], crop=(256, 256), min_overlap=32)
    # 300 rows: n = ceil(268/224) = 2, starts 0, 44; 100 columns fit in one padded tile
    assert len(plans) == 1
    assert plans[0]["images"] == 2 and plans[0]["tiles"] == [2, 1] and plans[0]["padded"] == [0, 156]
