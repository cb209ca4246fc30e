"""`segtune predict`: a folder in, index, colour and probability maps out; bad images reported, the rest written."""

import numpy as np
import pytest
from PIL import Image
from tiny_ensembles import PALETTE, random_image

from ensembles.bundle import load_bundle
from ensembles.predict import main, predict_image, read_image
from segtune import cli


@pytest.fixture
def images(tmp_path):
    """Two good grayscale images, a corrupt file and an RGB image, for a grayscale bundle."""
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(random_image(70, 90, 1, seed=3)[..., 0]).save(folder / "a.png")
    Image.fromarray(random_image(64, 64, 1, seed=4)[..., 0]).save(folder / "b.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    Image.fromarray(random_image(40, 40, 3, seed=5)).save(folder / "colour.png")
    return folder


def test_good_images_are_written_and_bad_ones_named(gray_ensemble, images, tmp_path, capsys):
    folder = gray_ensemble[1]
    output = tmp_path / "out"
    arguments = [str(folder), str(images), str(output), "--probabilities", "--runtime", "onnx", "--batch-size", "2"]
    assert main(arguments) == 1
    captured = capsys.readouterr()
    assert "broken.png" in captured.err
    assert "colour.png: 3 channel(s) (RGB) but the bundle takes in_channels=1; convert" in captured.err
    assert "written 2, failed 2" in captured.out
    assert sorted(p.name for p in output.iterdir()) == ["a.png", "a_colour.png", "a_probs.npy",
                                                        "b.png", "b_colour.png", "b_probs.npy"]
    bundle = load_bundle(folder, "onnx")
    for stem, suffix in (("a", ".png"), ("b", ".jpg")):
        index = np.asarray(Image.open(output / f"{stem}.png"))
        expected = predict_image(bundle, np.asarray(Image.open(images / f"{stem}{suffix}")))
        np.testing.assert_array_equal(index, expected.argmax(0))
        np.testing.assert_array_equal(np.asarray(Image.open(output / f"{stem}_colour.png")), np.array(PALETTE)[index])
        probs = np.load(output / f"{stem}_probs.npy")
        assert probs.dtype == np.float16 and probs.shape == (3, *index.shape)
        np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1, atol=5e-3)


def test_one_image_through_the_segtune_command(rgb_ensemble, tmp_path, capsys):
    image = tmp_path / "field.tif"
    Image.fromarray(random_image(100, 50, 3)).save(image)
    assert cli.main(["predict", str(rgb_ensemble[1]), str(image), str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["field.png", "field_colour.png"]
    assert "written 1, failed 0" in capsys.readouterr().out


def test_bad_bundle_or_input_stops_before_any_image(rgb_ensemble, images, tmp_path):
    not_a_bundle = tmp_path / "empty"
    not_a_bundle.mkdir()
    with pytest.raises(SystemExit, match=r"segtune predict: .*empty/manifest\.json is missing"):
        main([str(not_a_bundle), str(images), str(tmp_path / "out")])
    with pytest.raises(SystemExit, match=r"INPUT .*nowhere\.png does not exist"):
        main([str(rgb_ensemble[1]), str(tmp_path / "nowhere.png"), str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mode", ["RGBA", "P"])
def test_alpha_and_palette_images_are_read_as_rgb(tmp_path, mode):
    path = tmp_path / "image.png"
    Image.fromarray(random_image(20, 30, 3)).convert(mode).save(path)
    assert read_image(path, 3).shape == (20, 30, 3)
