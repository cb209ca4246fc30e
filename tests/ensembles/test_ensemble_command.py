"""`segtune ensemble` on a real finished smoke search: members, protocol, report, bundle, MLflow."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from ensembles.fit import CANDIDATES
from ensembles.members import near_identical
from ensembles.run import main as ensemble_main
from segtune import names
from trainables import read_val_probabilities

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(finished_search):
    cfg, outcome, _ = finished_search
    code = ensemble_main([str(outcome.paths.root), "--top-k", "3", "--keep-similar", "--folds", "3",
                          "--register-name", "smoke-ensemble"])
    assert code == 0
    return cfg, outcome, outcome.paths.segtune / "ensemble"


def test_members_are_the_top_trials_by_val_miou_without_the_failed_one(built):
    _, outcome, folder = built
    report = json.loads((folder / "report.json").read_text())
    ranked = [r for r in outcome.leaderboard if r.outcome != "failed"]
    assert [m["trial_id"] for m in report["members"]] == [r.trial_id for r in ranked[:3]]


def test_probabilities_are_float16_maps_of_val_and_test_images_only(built):
    _, outcome, folder = built
    splits = json.loads(outcome.paths.splits.read_text())
    report = json.loads((folder / "report.json").read_text())
    for member in report["members"]:
        files = sorted(p.stem for p in (folder / "probabilities" / member["trial_id"]).glob("*.npy"))
        assert files == sorted(splits["val"] + splits["test"])  # never a training image
        probs = np.load(folder / "probabilities" / member["trial_id"] / f"{files[0]}.npy")
        assert probs.dtype == np.float16 and probs.shape[0] == 4
        assert np.allclose(probs.astype(np.float32).sum(0), 1.0, atol=5e-3)


def test_report_holds_every_candidate_and_the_choice_is_the_best_cross_validated(built):
    _, _, folder = built
    report = json.loads((folder / "report.json").read_text())
    rows = report["candidates"]
    assert [r["candidate"] for r in rows] == list(CANDIDATES)
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["cv_miou"] == max(r["cv_miou"] for r in rows)
    assert all(0.0 <= r["test_miou_low"] <= r["test_miou"] <= r["test_miou_high"] <= 1.0 for r in rows)
    assert all(r["gain_low"] <= r["gain"] <= r["gain_high"] for r in rows)
    settings = {"resamples": 1000, "level": 0.95, "seed": 0, "baseline": "best_single",
                "test_images": report["test_images"]}
    assert {key: report["bootstrap"][key] for key in settings} == settings
    # resamples missing a scored class (a class in few of the 7 test images) are discarded: said only when there are
    assert set(report["bootstrap"]) - set(settings) <= {"discarded", "valid", "reason"}
    assert ("discarded" in report["bootstrap"]) == all("interval_note" in r for r in rows)
    assert (folder / "plots" / "class_iou.png").stat().st_size > 0
    assert (folder / "plots" / "test_predictions.png").stat().st_size > 0


def test_bundle_manifest_names_the_members_and_the_chosen_combiner(built):
    cfg, _, folder = built
    manifest = json.loads((folder / "bundle" / "manifest.json").read_text())
    report = json.loads((folder / "report.json").read_text())
    assert manifest["combiner"]["kind"] == report["chosen"]
    # the chosen candidate's members only, with their weights; the manifest adds what each member started from
    # (the smoke search trains from random weights) and the scale it reads images at
    assert [{k: v for k, v in m.items() if k not in ("started_from", "scale")} for m in manifest["members"]] == \
        report["ensemble"]
    assert [m["started_from"] for m in manifest["members"]] == [
        {"encoder": m["config"]["encoder"], "encoder_weights": None, "sha256": None} for m in report["ensemble"]]
    assert all(m["scale"] == 1.0 for m in manifest["members"])
    chosen = next(r for r in report["candidates"] if r["chosen"])
    assert manifest["scores"]["test_miou_low"] == chosen["test_miou_low"]
    assert manifest["in_channels"] == 3 and manifest["tile"] == [64, 64] and len(manifest["classes"]) == 4
    assert manifest["input_scale"] is None and cfg.resize is None  # the smoke search reads images at their own size
    assert {"model.torchscript.pt", "model.onnx", "manifest.json"} <= {p.name for p in (folder / "bundle").iterdir()}


def test_mlflow_has_an_ensemble_child_of_the_search_and_a_registered_model(built):
    cfg, outcome, _ = built
    client = MlflowClient(cfg.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.mlflow_experiment).experiment_id],
                              f"tags.`{names.TAG_KIND}` = 'ensemble'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["mlflow.parentRunId"] == outcome.parent_run_id and run.info.status == "FINISHED"
    assert {f"{c}_{key}" for c in CANDIDATES for key in ("cv_miou", "test_miou_low", "gain_high")} <= set(run.data.metrics)
    assert {"chosen_test_miou", "chosen_test_miou_low", "chosen_gain_low"} <= set(run.data.metrics)
    assert run.data.params["bootstrap_resamples"] == "1000" and run.data.params["select"] == "top-k"
    assert client.search_model_versions("name='smoke-ensemble'")


def test_a_parent_run_id_resolves_to_the_experiment(built, capsys):
    cfg, outcome, _ = built
    from ensembles.members import resolve_experiment
    assert resolve_experiment(outcome.parent_run_id, cfg.tracking_uri).root == outcome.paths.root


def test_bad_options_are_refused_before_any_compute(finished_search, tmp_path):
    _, outcome, _ = finished_search
    with pytest.raises(SystemExit, match="option --candidates: unknown \\['median'\\]"):
        ensemble_main([str(outcome.paths.root), "--candidates", "mean,median"])
    with pytest.raises(SystemExit, match="is not a segtune experiment"):
        ensemble_main([str(tmp_path)])
    with pytest.raises(SystemExit, match="option top_k"):
        ensemble_main([str(outcome.paths.root), "--top-k", "0"])
    one_val = tmp_path / "one_val"                  # the same search, had its validation split held one image
    shutil.copytree(outcome.paths.root, one_val)
    shutil.rmtree(one_val / "segtune" / "ensemble", ignore_errors=True)     # a test before may have built one
    splits_file = one_val / "segtune" / "splits.json"
    splits = json.loads(splits_file.read_text())
    splits["train"] += splits["val"][1:]
    splits["val"] = splits["val"][:1]
    splits_file.write_text(json.dumps(splits))
    with pytest.raises(SystemExit, match="validation split has 1 image\\(s\\).*use --refit-folds K"):
        ensemble_main([str(one_val)])
    assert not (one_val / "segtune" / "ensemble").exists()    # refused before any member was read


def test_near_identical_configs_differ_by_less_than_a_quarter_in_every_number():
    base = {"architecture": "Unet", "lr": 1e-3, "batch_size": 8}
    assert near_identical(base, {**base, "lr": 1.2e-3})
    assert not near_identical(base, {**base, "lr": 2e-3})
    assert not near_identical(base, {**base, "architecture": "FPN"})


def test_the_bundle_predicts_what_the_in_process_ensemble_predicts(built):
    _, outcome, folder = built
    _assert_bundle_matches_eager(outcome, folder)


def _assert_bundle_matches_eager(outcome, folder):
    import torch

    from ensembles.build import eager_ensemble
    from ensembles.bundle import Bundle, load_bundle
    from ensembles.predict import predict_image
    from segtune.data import make_synthetic

    module = eager_ensemble(outcome.paths)
    manifest = load_bundle(folder / "bundle").manifest
    assert len(module.members) == len(manifest["members"])

    @torch.no_grad()
    def forward(batch):
        return module(torch.from_numpy(batch)).numpy()

    eager = Bundle(folder / "bundle", manifest, "eager", "cpu", forward)
    image = make_synthetic(count=1, height=80, width=100, seed=5).images[0]  # not a tile multiple: tiled, blended
    expected = predict_image(eager, image)
    for runtime in ("torchscript", "onnx"):
        got = predict_image(load_bundle(folder / "bundle", runtime), image)
        assert np.abs(got - expected).max() < 1e-4, runtime
        assert (got.argmax(0) == expected.argmax(0)).mean() > 0.999, runtime


@pytest.mark.parametrize("source", ["segtune_results/segtune-crop_weed-2026112", "0123456789abcdef0123456789abcdef"])
def test_a_mistyped_experiment_leaves_no_file_behind(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)  # the default tracking URI is sqlite:///mlflow.db in the working directory
    with pytest.raises(SystemExit, match=f"segtune ensemble: {source} is neither an experiment folder .*nor the id "
                                         "of a run in sqlite:///mlflow.db"):
        ensemble_main([source])
    assert not list(tmp_path.iterdir())


# --select library: last in this file, as it rebuilds the same experiment's ensemble folder


@pytest.fixture(scope="module")
def built_library(finished_search):
    cfg, outcome, _ = finished_search
    code = ensemble_main([str(outcome.paths.root), "--select", "library", "--candidates", "library", "--top-k", "2",
                          "--folds", "3", "--no-register"])
    assert code == 0
    return cfg, outcome, outcome.paths.segtune / "ensemble"


def test_every_finished_trial_kept_its_validation_maps_beside_its_best_checkpoint(finished_search):
    _, outcome, _ = finished_search
    splits = json.loads(outcome.paths.splits.read_text())
    for row in outcome.leaderboard:
        if row.checkpoint and row.outcome != "failed":
            kept = read_val_probabilities(Path(row.checkpoint) / names.VAL_PROBABILITIES_FILE)
            assert list(kept) == splits["val"] and kept[splits["val"][0]].dtype == np.float16


def test_library_selects_among_every_trial_and_the_bundle_holds_them_with_their_weights(built_library):
    _, outcome, folder = built_library
    report = json.loads((folder / "report.json").read_text())
    finished = [r.trial_id for r in outcome.leaderboard if r.checkpoint and r.outcome != "failed"]
    assert report["select"] == "library" and report["library"] == finished  # the whole library, best first
    assert report["chosen"] == "library" and len(report["candidates"]) == 1
    weights = [m["weight"] for m in report["ensemble"]]
    assert weights and all(w >= 1 and float(w).is_integer() for w in weights)  # times picked
    assert {m["trial_id"] for m in report["ensemble"]} <= set(finished)
    manifest = json.loads((folder / "bundle" / "manifest.json").read_text())
    assert [{k: v for k, v in m.items() if k not in ("started_from", "scale")} for m in manifest["members"]] == \
        report["ensemble"] and manifest["combiner"]["kind"] == "library"


def test_the_library_bundle_predicts_what_its_eager_ensemble_predicts(built_library):
    _, outcome, folder = built_library
    _assert_bundle_matches_eager(outcome, folder)
