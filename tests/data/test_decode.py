"""decode_image: one rule per PIL mode, the same pixels in training (load_dataset) and `segtune predict`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import fakes
from ensembles.predict import read_image
from segtune.data import DataError, load_dataset
from segtune.data.decode import decode_image

H, W = 8, 12
ORANGE = (200, 100, 50)


def cmyk_jpeg(path):
    # flat C=0, M=100, Y=200, K=50 -> RGB (255 - C) * (255 - K) / 255 = (255, 155, 55) * 205 / 255 = (205, 125, 44);
    # K dropped would read (0, 100, 200)
    Image.fromarray(np.full((H, W, 4), (0, 100, 200, 50), np.uint8), "CMYK").save(path, "JPEG", quality=100)
    return np.full((H, W, 3), (205, 125, 44), np.uint8)


def palette_photo(path):
    # indices 0 | 1 (left | right half) through palette [orange, (10, 20, 30)]; read raw they would be 0 and 1
    indices = np.zeros((H, W), np.uint8)
    indices[:, W // 2:] = 1
    picture = Image.fromarray(indices, "P")
    picture.putpalette([*ORANGE, 10, 20, 30])
    picture.save(path)
    expected = np.empty((H, W, 3), np.uint8)
    expected[:, : W // 2], expected[:, W // 2:] = ORANGE, (10, 20, 30)
    return expected


def grey_palette_image(path):
    # every palette entry grey -> one channel: index 0 -> 40, index 1 -> 220
    indices = np.zeros((H, W), np.uint8)
    indices[2:, :] = 1
    picture = Image.fromarray(indices, "P")
    picture.putpalette([40, 40, 40, 220, 220, 220])
    picture.save(path)
    return np.where(indices[..., None] == 1, 220, 40).astype(np.uint8)


def sixteen_bit_png(path):
    # value // 256 whatever the image's own maximum (1000 here): 0, 255, 256, 1000, 25700 -> 0, 0, 1, 3, 100
    values = np.array([0, 255, 256, 1000, 25700, 1000], np.uint16)
    Image.fromarray(np.tile(values, (H, W // len(values)))).save(path)
    return np.tile(np.array([0, 0, 1, 3, 100, 3], np.uint8), (H, W // len(values)))[..., None]


def la_png(path):
    # grey 90 with alpha 0..: one channel 90 (alpha dropped); not 2 channels
    grey_alpha = np.stack([np.full((H, W), 90, np.uint8), np.linspace(0, 255, H * W).reshape(H, W).astype(np.uint8)], -1)
    Image.fromarray(grey_alpha, "LA").save(path)
    return np.full((H, W, 1), 90, np.uint8)


@pytest.mark.parametrize("write, suffix", [(cmyk_jpeg, ".jpg"), (palette_photo, ".png"), (grey_palette_image, ".png"),
                                           (sixteen_bit_png, ".png"), (la_png, ".png")])
def test_training_and_predict_decode_alike_to_hand_computed_pixels(tmp_path, write, suffix):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    fakes.write_png(root / "masks" / "a.png", fakes.class_layout((H, W)))
    (root / "classes.json").write_text('{"names": ["background", "crop", "weed"]}')
    expected = write(root / "images" / f"a{suffix}")

    trained_on = load_dataset(str(root)).images[0]
    predicted_on = read_image(root / "images" / f"a{suffix}", expected.shape[2])

    np.testing.assert_array_equal(trained_on, expected)
    np.testing.assert_array_equal(predicted_on, expected)


@pytest.mark.parametrize("mode, channels", [("1", 1), ("L", 1), ("RGB", 3), ("RGBA", 3), ("YCbCr", 3)])
def test_eight_bit_modes_give_one_or_three_channels(tmp_path, mode, channels):
    path = tmp_path / ("a.jpg" if mode == "YCbCr" else "a.png")
    Image.fromarray(np.full((H, W, 3), 255, np.uint8)).convert(mode).save(path)
    image = decode_image(path)
    assert image.shape == (H, W, channels) and image.dtype == np.uint8
    assert image.min() >= 254          # white stays white in every mode (JPEG within a level)


def test_float_image_is_refused_with_how_to_convert(tmp_path):
    Image.fromarray(np.full((H, W), 0.5, np.float32)).save(tmp_path / "a.tif")
    with pytest.raises(ValueError, match="mode F is not read.*8-bit grayscale or RGB PNG"):
        decode_image(tmp_path / "a.tif")


def test_header_claiming_400_million_pixels_is_refused_in_training_and_predict(tmp_path):
    root = fakes.write_index_folder(tmp_path / "ds", n=2)
    bomb = fakes.write_png_claiming(root / "images" / "img_01.png", 20000, 20000)
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    [(where, why)] = info.value.problems
    assert where == str(bomb) and "400000000 pixels" in why and "too large" in why
    with pytest.raises(ValueError, match="400000000 pixels"):
        read_image(bomb, 3)


def test_header_beyond_pils_warning_limit_is_refused_too(tmp_path):
    # 10000 x 10000 = 100 million pixels: above PIL's 89.5 million warning limit, below its error limit
    bomb = fakes.write_png_claiming(tmp_path / "big.png", 10000, 10000)
    with pytest.raises(ValueError, match="too large to decode safely: Image size \\(100000000 pixels\\)"):
        decode_image(bomb)


def _tagged(path, pixels: np.ndarray, turn: int):
    """pixels saved as stored, with an EXIF orientation tag (6: viewers turn it 90 degrees clockwise; 3: 180)."""
    exif = Image.Exif()
    exif[0x0112] = turn
    Image.fromarray(pixels).save(path, exif=exif)


@pytest.mark.parametrize("turn, shown", [(6, lambda a: np.rot90(a, -1)), (3, lambda a: a[::-1, ::-1]),
                                         (1, lambda a: a)])
def test_photos_are_read_upright_as_viewers_show_them_in_training_and_predict(tmp_path, turn, shown):
    stored = np.arange(H * W, dtype=np.uint8).reshape(H, W)     # 8 x 12 as stored
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    _tagged(root / "images" / "a.png", stored, turn)
    upright = shown(stored)                                     # 12 x 8 for orientation 6: what the annotator saw
    layout = shown(fakes.class_layout((H, W)))                  # the mask drawn on the upright picture
    fakes.write_png(root / "masks" / "a.png", np.ascontiguousarray(layout))
    (root / "classes.json").write_text('{"names": ["background", "crop", "weed"]}')

    data = load_dataset(str(root))
    np.testing.assert_array_equal(data.images[0][..., 0], upright)
    np.testing.assert_array_equal(data.masks[0], layout)        # image and mask still line up pixel for pixel
    np.testing.assert_array_equal(read_image(root / "images" / "a.png", 1)[..., 0], upright)


def test_a_mask_of_the_stored_pixels_of_a_turned_photo_names_the_exif_tag(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    _tagged(root / "images" / "a.png", np.zeros((H, W), np.uint8), 6)
    fakes.write_png(root / "masks" / "a.png", fakes.class_layout((H, W)))    # drawn on the 8 x 12 stored pixels
    (root / "classes.json").write_text('{"names": ["background", "crop", "weed"]}')
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    [(where, why)] = info.value.problems
    assert where == str(root / "masks" / "a.png")
    assert why.startswith("size 12x8 differs from its image's 8x12 as stored: the image's EXIF orientation (6)")
    assert "exiftool -Orientation= FILE" in why
