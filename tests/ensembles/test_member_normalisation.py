"""Members that normalise images differently (pretrained weights' mean/std, or the data's) in one ensemble, and the
manifest's record of the weights each member started from."""

import json

import torch
from torch import nn

from ensembles.build import bundle_manifest
from ensembles.combine import EnsembleModule, Renormalised, WeightedMean, reading_as_trained
from search.config import load_config
from segtune.data import make_synthetic
from trainables import TrialConfig, build_model


def test_a_renormalised_member_sees_its_own_normalisation():
    # pixel 0.6: own (0.6 - 0.5) / 0.25 = 0.4; the ensemble's x = (0.6 - 0.4) / 0.2 = 1.0 -> 1.0 * 0.2 / 0.25
    # + (0.4 - 0.5) / 0.25 = 0.8 - 0.4 = 0.4
    member = Renormalised(nn.Identity(), (0.5,), (0.25,), (0.4,), (0.2,))
    assert torch.allclose(member(torch.full((1, 1, 2, 2), 1.0)), torch.full((1, 1, 2, 2), 0.4))
    same = nn.Identity()
    assert reading_as_trained(same, (0.5,), (0.25,), [0.5], [0.25]) is same


def test_an_ensemble_of_differently_normalised_members_gives_each_its_own_input():
    torch.manual_seed(0)
    imagenet = TrialConfig(num_classes=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    data_stats = TrialConfig(num_classes=3, mean=(0.3, 0.3, 0.3), std=(0.2, 0.2, 0.2))
    configs = (imagenet, data_stats)
    models = [build_model(c).eval() for c in configs]
    members = [reading_as_trained(m, c.mean, c.std, imagenet.mean, imagenet.std) for m, c in zip(models, configs)]
    ensemble = EnsembleModule(members, WeightedMean([1.0, 1.0]), imagenet.mean, imagenet.std).eval()
    images = torch.rand(1, 3, 64, 64) * 255

    def own_input(c):
        return (images / 255 - torch.tensor(c.mean).view(1, 3, 1, 1)) / torch.tensor(c.std).view(1, 3, 1, 1)
    expected = sum(torch.softmax(m(own_input(c)), 1) for m, c in zip(models, configs)) / 2
    with torch.no_grad():
        assert torch.allclose(ensemble(images), expected, atol=1e-5)


def test_the_manifest_records_the_weights_each_member_started_from():
    cfg = load_config(None, {"crop": (32, 64)})
    summary = {"chosen": "mean", "ensemble": [{"trial_id": "t1", "weight": 0.5}, {"trial_id": "t2", "weight": 0.5}]}
    chosen_row = {"cv_miou": 0.5, "test_miou": 0.4, "test_miou_low": 0.3, "test_miou_high": 0.5, "gain": 0.02,
                  "gain_low": -0.01, "gain_high": 0.05, "gain_verdict": "cannot be told from zero"}
    pretrained = TrialConfig(encoder_weights="imagenet", weights_cache="/cache", encoder_weights_sha256="ab12")
    scratch = TrialConfig(encoder_weights="imagenet", weights_cache="/cache", pretrained=False)
    manifest = bundle_manifest(cfg, make_synthetic(count=2), pretrained, summary, chosen_row, 0.25, [pretrained, scratch])
    started = [m["started_from"] for m in json.loads(json.dumps(manifest))["members"]]
    assert started == [{"encoder": "tu-mobilenetv3_small_050", "encoder_weights": "imagenet", "sha256": "ab12"},
                       {"encoder": "tu-mobilenetv3_small_050", "encoder_weights": None, "sha256": None}]
