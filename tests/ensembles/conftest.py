"""Exported bundles of the tiny ensembles, built once per test session (a few seconds each)."""

import pytest
from tiny_ensembles import manifest_for, tiny_ensemble

from ensembles.bundle import export_bundle


@pytest.fixture(scope="session")
def rgb_ensemble(tmp_path_factory):
    """(module, bundle folder): weighted mean of two RGB members; non-square 64x96 tiles catch h/w mix-ups."""
    module, configs = tiny_ensemble("weighted_mean", 3)
    folder = export_bundle(module, manifest_for(configs, "weighted_mean", [64, 96]), tmp_path_factory.mktemp("rgb"))
    return module, folder


@pytest.fixture(scope="session")
def gray_ensemble(tmp_path_factory):
    """(module, bundle folder): pixel-logistic stack of two grayscale members, 64x64 tiles."""
    module, configs = tiny_ensemble("pixel_logistic", 1)
    folder = export_bundle(module, manifest_for(configs, "pixel_logistic", [64, 64]), tmp_path_factory.mktemp("gray"))
    return module, folder
