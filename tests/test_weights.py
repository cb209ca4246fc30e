"""The pretrained-weights cache (segtune/weights.py) and `segtune weights fetch`, with no network: the one function
that reaches a hub, download_encoder, is replaced by one that builds the encoder with random weights or raises."""

import json

import pytest
import segmentation_models_pytorch as smp
import torch

from fakes import IMAGENET_MEAN, IMAGENET_STD, offline_download
from segtune import weights
from segtune.cli import main as segtune_main
from segtune.weights import (IMAGENET, META_FILE, WEIGHTS_FILE, WeightsUnavailable, cache_location, cached_weights,
                             ensure_cached, file_sha256, is_weights_name, known_weights, store_weights)

ENCODER = "tu-mobilenetv3_small_050"


@pytest.fixture
def downloads(monkeypatch):
    """download_encoder as if online: the encoder with seeded random weights; records each call."""
    calls = []

    def download(encoder, name):
        calls.append((encoder, name))
        torch.manual_seed(len(calls))
        return smp.encoders.get_encoder(encoder, depth=5).state_dict(), IMAGENET_MEAN, IMAGENET_STD, f"test {encoder}"
    monkeypatch.setattr(weights, "download_encoder", download)
    return calls


def test_names_and_paths_are_told_apart():
    assert is_weights_name("imagenet") and is_weights_name("a1_in1k") and is_weights_name("imagenet+5k")
    assert not is_weights_name("encoder.pt") and not is_weights_name("weights/encoder") and not is_weights_name("x.pth")


def test_smp_and_timm_weights_names_are_known_offline():
    assert known_weights("resnet18") == ("imagenet", "ssl", "swsl")  # smp's pretrained_settings
    assert known_weights("tu-resnet18")[0] == IMAGENET and "a1_in1k" in known_weights("tu-resnet18")  # timm's tags
    assert known_weights("tu-resnet18.a1_in1k") == (IMAGENET,)  # the encoder names its weights itself
    assert known_weights("tu-mobilenetv2_035") == ()  # a timm model without pretrained weights


def test_the_cache_is_the_option_else_segtune_cache_else_under_the_storage_path(tmp_path, monkeypatch):
    monkeypatch.delenv("SEGTUNE_CACHE", raising=False)
    assert cache_location(None, str(tmp_path / "results")) == str(tmp_path / "results" / "weights")
    assert cache_location(None, "s3://bucket/results") == "s3://bucket/results/weights"
    monkeypatch.setenv("SEGTUNE_CACHE", str(tmp_path / "shared"))
    assert cache_location(None, "s3://bucket/results") == str(tmp_path / "shared" / "weights")
    assert cache_location(str(tmp_path / "mine"), "s3://bucket/results") == str(tmp_path / "mine")


def test_fetched_once_then_read_from_the_cache(tmp_path, downloads):
    first = ensure_cached([ENCODER, "resnet18"], IMAGENET, str(tmp_path), log=lambda line: None)
    again = ensure_cached([ENCODER, "resnet18"], IMAGENET, str(tmp_path), log=lambda line: None)
    assert downloads == [(ENCODER, IMAGENET), ("resnet18", IMAGENET)]  # the second search downloads nothing
    entry = again[ENCODER]
    assert entry == first[ENCODER] and entry.file == tmp_path / ENCODER / IMAGENET / WEIGHTS_FILE
    meta = json.loads((tmp_path / ENCODER / IMAGENET / META_FILE).read_text())
    assert meta["sha256"] == file_sha256(entry.file) and meta["mean"] == list(IMAGENET_MEAN)


def test_a_cached_file_that_no_longer_matches_its_checksum_is_fetched_again(tmp_path, downloads):
    entry = ensure_cached([ENCODER], IMAGENET, str(tmp_path), log=lambda line: None)[ENCODER]
    entry.file.write_bytes(entry.file.read_bytes()[:1000])  # a copy cut short
    ensure_cached([ENCODER], IMAGENET, str(tmp_path), log=lambda line: None)
    assert len(downloads) == 2 and file_sha256(entry.file) == cached_weights(str(tmp_path), ENCODER, IMAGENET).sha256


def test_offline_with_an_empty_cache_refuses_naming_encoders_command_and_option(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "download_encoder", offline_download)
    with pytest.raises(WeightsUnavailable) as refusal:
        ensure_cached([ENCODER, "resnet18"], IMAGENET, str(tmp_path / "cache"), log=lambda line: None)
    message = str(refusal.value)
    assert f"segtune weights fetch {ENCODER} resnet18 --weights imagenet --to DIR" in message
    assert "weights_cache: DIR" in message and "SEGTUNE_CACHE" in message and "simulated: no network" in message
    assert not (tmp_path / "cache" / ENCODER / IMAGENET / META_FILE).exists()


def test_a_cache_in_a_bucket_is_uploaded_whole_and_copied_to_the_node_that_reads_it(tmp_path, downloads, monkeypatch):
    # file:// goes through pyarrow's filesystem layer exactly as s3:// does, without an S3 server
    remote = f"file://{tmp_path / 'bucket' / 'weights'}"
    monkeypatch.setenv("SEGTUNE_CACHE", str(tmp_path / "driver"))
    fetched = ensure_cached([ENCODER], IMAGENET, remote, log=lambda line: None)[ENCODER]
    assert (tmp_path / "bucket" / "weights" / ENCODER / IMAGENET / META_FILE).is_file()
    monkeypatch.setenv("SEGTUNE_CACHE", str(tmp_path / "worker"))  # another node: nothing local yet
    read = cached_weights(remote, ENCODER, IMAGENET)
    assert read.file.is_relative_to(tmp_path / "worker") and file_sha256(read.file) == fetched.sha256


def test_fetch_command_fills_a_folder_a_search_can_point_at(tmp_path, downloads, capsys):
    assert segtune_main(["weights", "fetch", ENCODER, "resnet18", "--to", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert f"weights_cache: {tmp_path / 'w'}" in out and downloads == [(ENCODER, IMAGENET), ("resnet18", IMAGENET)]
    assert cached_weights(str(tmp_path / "w"), "resnet18", IMAGENET).source == "test resnet18"


def test_fetch_command_refuses_unknown_weights_and_fails_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(weights, "download_encoder", offline_download)
    assert segtune_main(["weights", "fetch", "resnet18", "--weights", "a1_in1k", "--to", str(tmp_path)]) == 2
    assert "resnet18 has no weights 'a1_in1k' (smp/timm know: imagenet, ssl, swsl)" in capsys.readouterr().err
    assert segtune_main(["weights", "fetch", "resnet18", "--to", str(tmp_path)]) == 1
    assert "resnet18 imagenet: could not be downloaded (OSError: Cannot reach huggingface.co" in capsys.readouterr().err


def test_store_writes_the_documented_layout(tmp_path):
    state = smp.encoders.get_encoder(ENCODER, depth=5).state_dict()
    entry = store_weights(tmp_path / ENCODER / IMAGENET, state, IMAGENET_MEAN, IMAGENET_STD, "made here")
    assert sorted(p.name for p in (tmp_path / ENCODER / IMAGENET).iterdir()) == [WEIGHTS_FILE, META_FILE]
    assert entry == cached_weights(str(tmp_path), ENCODER, IMAGENET)
    with pytest.raises(FileNotFoundError, match=f"segtune weights fetch resnet18 --weights imagenet --to {tmp_path}"):
        cached_weights(str(tmp_path), "resnet18", IMAGENET)
