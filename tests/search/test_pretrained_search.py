"""A search with named encoder weights: fetched once by the driver, refused before any compute when it cannot be."""

import pytest
import segmentation_models_pytorch as smp
import torch

import search.driver
from search.config import load_config
from search.fixed import cache_pretrained_weights, fixed_trial_params
from search.run import main as search_main
from fakes import IMAGENET_MEAN, IMAGENET_STD, offline_download
from segtune import weights
from segtune.cli import EXIT_REFUSED
from segtune.data import make_splits, make_synthetic
from spaces import get_space

SMOKE_ENCODER = "tu-mobilenetv3_small_050"


@pytest.fixture
def downloads(monkeypatch):
    calls = []

    def download(encoder, name):
        calls.append(encoder)
        return smp.encoders.get_encoder(encoder, depth=5).state_dict(), IMAGENET_MEAN, IMAGENET_STD, "test"
    monkeypatch.setattr(weights, "download_encoder", download)
    return calls


def fixed_for(cfg):
    data = make_synthetic(count=12)
    return fixed_trial_params(cfg, data, make_splits(data, 0.2, 0.0, seed=0)).as_dict()


def test_offline_without_the_cache_the_search_refuses_before_ray_folders_or_mlflow(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(weights, "download_encoder", offline_download)
    monkeypatch.delenv("SEGTUNE_CACHE", raising=False)

    def no_ray(cfg):
        raise AssertionError("Ray was started")
    monkeypatch.setattr(search.driver, "start_ray", no_ray)
    code = search_main(["--smoke-test", "--name", "x", "--storage-path", str(tmp_path / "results"),
                        "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--encoder-weights", "imagenet"])
    error = capsys.readouterr().err
    assert code == EXIT_REFUSED
    assert f"'imagenet' weights of {SMOKE_ENCODER} are not in the weights cache {tmp_path / 'results' / 'weights'}" in error
    assert f"segtune weights fetch {SMOKE_ENCODER} --weights imagenet --to DIR" in error
    assert "weights_cache: DIR" in error and "simulated: no network" in error
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlflow.db").exists()


def test_the_driver_fetches_each_encoder_once_into_the_cache_trials_read(tmp_path, downloads):
    cfg = load_config(None, {"space": "default", "encoder_weights": "imagenet", "weights_cache": str(tmp_path / "w")})
    fixed = fixed_for(cfg)
    assert fixed["weights_cache"] == str(tmp_path / "w")
    cache_pretrained_weights(cfg, get_space(cfg.space), fixed)
    cache_pretrained_weights(cfg, get_space(cfg.space), fixed)  # a resumed search finds them
    assert downloads == ["tu-mobilenetv3_small_050", "tu-resnet18"]
    assert (tmp_path / "w" / "tu-resnet18" / "imagenet" / "weights.json").is_file()


def test_nothing_is_fetched_for_a_file_or_no_weights(tmp_path, downloads):
    torch.save(smp.encoders.get_encoder(SMOKE_ENCODER, depth=5).state_dict(), tmp_path / "enc.pt")
    for options in ({}, {"encoder_weights": str(tmp_path / "enc.pt")}):
        cfg = load_config(None, {"space": "smoke", **options})
        fixed = fixed_for(cfg)
        assert fixed["weights_cache"] is None
        cache_pretrained_weights(cfg, get_space(cfg.space), fixed)
    assert downloads == []


def test_an_encoder_without_those_weights_is_refused_unless_pretrained_is_searched(tmp_path, downloads):
    overrides = {"encoder": [SMOKE_ENCODER, "tu-mobilenetv2_035"]}
    cfg = load_config(None, {"space": "smoke", "space_overrides": overrides, "encoder_weights": "imagenet",
                             "weights_cache": str(tmp_path)})
    with pytest.raises(ValueError, match="tu-mobilenetv2_035 has no weights 'imagenet' .*pretrained: \\[true, false\\]"):
        cache_pretrained_weights(cfg, get_space(cfg.space, cfg.space_overrides), fixed_for(cfg))
    assert downloads == []
    searched = {**overrides, "pretrained": [True, False]}
    cfg = load_config(None, {"space": "smoke", "space_overrides": searched, "encoder_weights": "imagenet",
                             "weights_cache": str(tmp_path)})
    cache_pretrained_weights(cfg, get_space(cfg.space, cfg.space_overrides), fixed_for(cfg))
    assert downloads == [SMOKE_ENCODER]


def test_weights_options_are_checked_when_the_config_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, {"encoder_weights": "imagenet", "weights_cache": "shared/weights"})
    assert cfg.encoder_weights == "imagenet" and cfg.weights_cache == str(tmp_path / "shared" / "weights")
    assert load_config(None, {"weights_cache": "s3://bucket/weights"}).weights_cache == "s3://bucket/weights"
    with pytest.raises(ValueError, match="option weights_cache: gs://b/w must be a folder .* or an s3:// URI"):
        load_config(None, {"weights_cache": "gs://b/w"})
    with pytest.raises(ValueError, match="option space_overrides.pretrained: .* set encoder_weights"):
        load_config(None, {"space_overrides": {"pretrained": [True, False]}})


@pytest.mark.slow  # a real two-trial search on a local Ray: about a minute
def test_a_search_starts_its_trials_from_the_cached_weights_without_downloading(tmp_path, monkeypatch, local_ray):
    from search import run_search
    from search.run import SMOKE_TEST
    from trainables import load_model
    monkeypatch.setattr(weights, "download_encoder", offline_download)
    state = smp.encoders.get_encoder(SMOKE_ENCODER, depth=5).state_dict()
    entry = weights.store_weights(tmp_path / "w" / SMOKE_ENCODER / "imagenet", state, IMAGENET_MEAN, IMAGENET_STD, "test")
    cfg = load_config(None, {**SMOKE_TEST, "num_samples": 2, "max_epochs": 1, "n_startup_trials": 1,
                             "name": "pretrained", "storage_path": str(tmp_path / "results"),
                             "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "encoder_weights": "imagenet",
                             "weights_cache": str(tmp_path / "w")})
    outcome = run_search(cfg)
    assert len(outcome.leaderboard) == 2 and outcome.best.checkpoint
    _, trial_cfg = load_model(f"{outcome.best.checkpoint}/checkpoint.pt")
    assert trial_cfg.encoder_weights_sha256 == entry.sha256 and trial_cfg.mean == IMAGENET_MEAN
