"""Sizes against 2**depth, against hand-worked numbers (tiling plans: tests/test_tiling.py)."""

from __future__ import annotations

from segtune.inspect.geometry import depth_fit


def test_depth_fit_pads_or_crops_to_multiples():
    # depth 5 -> multiples of 32. 288 = 9*32, 384 = 12*32 fit. 966 -> 31*32 = 992 (+26) or 30*32 = 960;
    # 1296 -> 41*32 = 1312 (+16) or 40*32 = 1280
    fits = depth_fit([(966, 1296), (288, 384), (966, 1296)], depth=5)
    assert fits[0] == {"size": [966, 1296], "images": 2, "fits": False, "pad_to": [992, 1312], "pad": [26, 16],
                       "crop_to": [960, 1280]}
    assert fits[1]["size"] == [288, 384] and fits[1]["fits"] and fits[1]["pad"] == [0, 0]

