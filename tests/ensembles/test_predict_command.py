"""`segtune predict`: a folder in, index, colour and probability maps out; bad images reported, the rest written."""

import shutil

import numpy as np
import pytest
from PIL import Image
from tiny_ensembles import PALETTE, edit_manifest, random_image

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


def test_a_prediction_never_replaces_an_input_image(rgb_ensemble, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(random_image(64, 96, 3)).save(photos / "photo.png")
    before = (photos / "photo.png").read_bytes()
    with pytest.raises(SystemExit, match=r"segtune predict: the prediction .*photos/photo\.png would overwrite the "
                                         "input image of that name; choose another OUTPUT folder"):
        main([str(rgb_ensemble[1]), str(photos / "photo.png"), str(photos)])
    assert (photos / "photo.png").read_bytes() == before and [p.name for p in photos.iterdir()] == ["photo.png"]


def test_output_that_is_a_file_is_refused(rgb_ensemble, images, tmp_path):
    taken = tmp_path / "masks.png"
    taken.write_bytes(b"keep me")
    with pytest.raises(SystemExit, match=r"segtune predict: OUTPUT .*masks\.png is a file; pass a folder"):
        main([str(rgb_ensemble[1]), str(images), str(taken)])
    with pytest.raises(SystemExit, match=r"segtune predict: OUTPUT .*masks\.png/out cannot be created"):
        main([str(rgb_ensemble[1]), str(images), str(taken / "out")])
    assert taken.read_bytes() == b"keep me"


def test_manifest_with_other_classes_than_the_network_stops_with_one_message(rgb_ensemble, tmp_path):
    folder = shutil.copytree(rgb_ensemble[1], tmp_path / "bundle")
    edit_manifest(folder, lambda m: [m["classes"].append("stone"), m["palette"].append([9, 9, 9])])
    Image.fromarray(random_image(64, 96, 3)).save(tmp_path / "field.png")
    with pytest.raises(SystemExit, match=r"segtune predict: .*bundle/manifest\.json lists 4 classes but its "
                                         r"torchscript network outputs 3"):
        main([str(folder), str(tmp_path / "field.png"), str(tmp_path / "out")])
    assert not list((tmp_path / "out").iterdir())


def test_bundle_of_format_1_predicts_as_before_and_says_it_is_unchecked(rgb_ensemble, tmp_path, capsys):
    folder = shutil.copytree(rgb_ensemble[1], tmp_path / "bundle")
    edit_manifest(folder, lambda m: [m.pop(key) for key in ("input_scale", "sha256", "any_size", "outputs")]
                  + [m.update(format_version=1)])
    image = random_image(100, 130, 3, seed=2)
    Image.fromarray(image).save(tmp_path / "field.png")
    assert main([str(folder), str(tmp_path / "field.png"), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "carries no checksums" in out and "take 64x96 tiles only, so every image is tiled" in out
    # at the image's own size and in tiles, as before
    expected = predict_image(load_bundle(rgb_ensemble[1]), image, tile_above=0).argmax(0)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "field.png")), expected)


def test_resized_bundle_writes_outputs_at_each_image_size(rgb_ensemble, tmp_path, capsys):
    folder = shutil.copytree(rgb_ensemble[1], tmp_path / "bundle")
    edit_manifest(folder, lambda m: m.update(input_scale={"resize": [64, 96]}))
    Image.fromarray(random_image(128, 192, 3)).save(tmp_path / "field.png")
    assert main([str(folder), str(tmp_path / "field.png"), str(tmp_path / "out"), "--probabilities"]) == 0
    assert "images are resized to 64x96 as in training" in capsys.readouterr().out
    assert np.asarray(Image.open(tmp_path / "out" / "field.png")).shape == (128, 192)
    assert np.load(tmp_path / "out" / "field_probs.npy").shape == (3, 128, 192)


@pytest.mark.parametrize("mode", ["RGBA", "P"])
def test_alpha_and_palette_images_are_read_as_rgb(tmp_path, mode):
    path = tmp_path / "image.png"
    Image.fromarray(random_image(20, 30, 3)).convert(mode).save(path)
    assert read_image(path, 3).shape == (20, 30, 3)
