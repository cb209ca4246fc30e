"""`segtune ensemble --refit-folds K --refit-top M`: the M best configs retrained on K folds of train+val as Ray Tune
trials, the candidates fitted on their out-of-fold maps, the fold models exported; resumable, logged to MLflow."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from ensembles.combine import FoldAverage
from ensembles.members import Member
from ensembles.refit import RefitOptions, plan_refit
from ensembles.run import main as ensemble_main
from search import load_config, run_search, search_inputs
from search.refit import ALL, check_refit, check_saved_plan
from search.run import SMOKE_TEST
from segtune import names

PARAMS = {"architecture": "Unet", "encoder": "tu-mobilenetv3_small_050", "loss": "cross_entropy", "lr": 0.01}


def _members(count: int, epochs: int = 2) -> list[Member]:
    return [Member(f"t{n}", 0.5 - n / 10, {**PARAMS, "lr": 0.01 * (n + 1)}, "unused.pt", None, epochs)
            for n in range(count)]


@pytest.fixture(scope="module")
def synthetic():
    """The smoke config, the synthetic data and its seeded splits (34 train, 7 val, 7 test)."""
    cfg = load_config(None, dict(SMOKE_TEST))
    data, splits, _ = search_inputs(cfg)
    return cfg, data, splits


def test_folds_partition_train_and_val_and_every_image_is_out_of_fold_exactly_once(synthetic):
    cfg, data, splits = synthetic
    plan = plan_refit(cfg, data, splits, _members(2), RefitOptions(3, 2))
    train_val = sorted(splits["train"] + splits["val"])
    assert plan.train_val == train_val and not set(train_val) & set(splits["test"])
    assert sorted(len(f) for f in plan.folds) == [13, 14, 14]  # 41 images in 3 folds
    for image in train_val:  # held out by exactly one fold trial, trained on by the other K - 1
        assert sum(image in plan.splits(f)["val"] for f in plan.fold_names()) == 1
        assert sum(image in plan.splits(f)["train"] for f in plan.fold_names()) == 2
    assert all(not set(plan.splits(f)["train"]) & set(plan.splits(f)["val"]) for f in plan.fold_names())
    assert plan == plan_refit(cfg, data, splits, _members(2), RefitOptions(3, 2))  # seeded: the same folds again


def test_every_trial_trains_its_search_trials_epochs_without_early_stopping_on_its_own_statistics(synthetic):
    cfg, data, splits = synthetic
    members = _members(2, epochs=2)
    plan = plan_refit(cfg, data, splits, members, RefitOptions(2, 2, refit_all=True))
    assert [c.trial_id for c in plan.configs] == ["t0", "t1"] and [c.epochs for c in plan.configs] == [2, 2]
    assert plan.fold_names() == ["0", "1", ALL] and plan.splits(ALL) == {"train": plan.train_val, "val": splits["val"]}
    trials = plan.trial_configs()
    assert len(trials) == 6 and all(t["early_stop_patience"] is None for t in trials)
    fixed = check_refit(plan, cfg, data)
    assert all(not f["keep_val_probabilities"] for f in fixed.values())
    from segtune.data import normalisation_stats
    assert fixed["0"]["mean"] == normalisation_stats(data, plan.splits("0")["train"])[0]  # the fold's own images
    assert fixed["0"]["mean"] != fixed["1"]["mean"]


def test_a_warmup_as_long_as_the_trial_gets_one_more_epoch(synthetic):
    cfg, data, splits = synthetic
    member = Member("t0", 0.5, {**PARAMS, "warmup_epochs": 2, "loss": "dice"}, "unused.pt", None, epochs=1)
    cfg = dataclasses.replace(cfg, max_epochs=4)  # a search whose trial ASHA stopped after 1 epoch, in its warm-up
    assert plan_refit(cfg, data, splits, [member], RefitOptions(2, 1)).configs[0].epochs == 3


def test_bad_refit_options_are_refused_naming_the_option(synthetic, tmp_path):
    cfg, data, splits = synthetic
    with pytest.raises(ValueError, match="option --refit-folds: 1; use 2 or more"):
        RefitOptions(1, 2)
    with pytest.raises(ValueError, match="option --refit-top: 0"):
        RefitOptions(2, 0)
    with pytest.raises(ValueError, match="option --refit-top: 3, but the search has 2 finished trial"):
        plan_refit(cfg, data, splits, _members(2), RefitOptions(2, 3))
    with pytest.raises(ValueError, match="option --refit-folds: 42 folds of 41 images"):
        plan_refit(cfg, data, splits, _members(2), RefitOptions(42, 2))
    for flag in ("--refit-top", "--refit-all"):  # refused before the experiment is even read
        with pytest.raises(SystemExit, match=f"option {flag}: needs --refit-folds"):
            ensemble_main([str(tmp_path / "no_such_experiment"), flag, *(["2"] if flag == "--refit-top" else [])])


def test_a_refit_folder_resumes_only_the_plan_it_was_started_with(synthetic, tmp_path):
    cfg, data, splits = synthetic
    plan = plan_refit(cfg, data, splits, _members(2), RefitOptions(2, 2))
    saved = tmp_path / "plan.json"
    saved.write_text(json.dumps(plan.to_json()))
    check_saved_plan(plan, saved)  # the same plan: resumed
    other = plan_refit(cfg, data, splits, _members(3)[1:], RefitOptions(2, 2))
    with pytest.raises(ValueError, match="holds a refit started for another plan .configs differ"):
        check_saved_plan(other, saved)


def test_fold_average_gives_the_mean_of_its_networks_probabilities():
    class Constant(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.register_buffer("logits", torch.tensor(logits).view(1, -1, 1, 1))

        def forward(self, x):
            return self.logits.expand(x.shape[0], -1, *x.shape[2:])

    # logits [0, 0] -> [0.5, 0.5]; [log 3, 0] -> [0.75, 0.25]; their mean [0.625, 0.375]
    average = FoldAverage([Constant([0.0, 0.0]), Constant([float(np.log(3.0)), 0.0])])
    probs = torch.softmax(average(torch.zeros(1, 3, 2, 2)), 1)
    assert torch.allclose(probs[0, :, 0, 0], torch.tensor([0.625, 0.375]), atol=1e-6)


# end to end, on a real tiny search (2 trials of 2 short epochs): a refit whose one fold trial fails, the same command
# again (only that trial runs), a third time (no Ray at all), the bundle through `segtune predict`

REFIT = ["--refit-folds", "2", "--refit-top", "2", "--folds", "2", "--candidates", "best_single,mean,greedy",
         "--no-register"]


@pytest.fixture(scope="module")
def tiny_search(local_ray, tmp_path_factory):
    folder = tmp_path_factory.mktemp("refit")
    cfg = load_config(None, {**SMOKE_TEST, "num_samples": 2, "n_startup_trials": 1, "name": "refit",
                             "storage_path": str(folder), "tracking_uri": f"sqlite:///{folder}/mlflow.db"})
    outcome = run_search(cfg)
    return cfg, outcome


def _recording(log, fail_lr=None, fail_val=None):
    """The search's trainable, writing each call (its lr, held-out images, the images it was given) to `log`; it
    raises for the trial of lr fail_lr held out on fail_val."""
    from trainables import train_segmentation

    def trainable(config, data, splits, fixed):
        with open(log, "a") as handle:
            handle.write(json.dumps({"lr": config["lr"], "val": splits["val"], "names": data.names}) + "\n")
        if config["lr"] == fail_lr and splits["val"] == fail_val:
            raise RuntimeError("an injected failure")
        train_segmentation(config, data, splits, fixed)
    return trainable


def _calls(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(scope="module")
def refitted(tiny_search, tmp_path_factory):
    """Run 1 with config 2's fold 1 failing, then run 2 (that trial only); each run's calls and report."""
    cfg, outcome = tiny_search
    from ensembles.members import top_members
    from search.experiment import load_experiment_data
    _, data, splits = load_experiment_data(outcome.paths)
    plan = plan_refit(cfg, data, splits, top_members(outcome.paths, 2, cfg.max_epochs), RefitOptions(2, 2))
    logs = tmp_path_factory.mktemp("calls")
    folder = outcome.paths.ensemble.root / "refit-k2-top2"
    runs = []
    for number, trainable in enumerate((_recording(logs / "1", plan.configs[1].params["lr"], list(plan.folds[1])),
                                        _recording(logs / "2")), 1):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("search.refit.train_segmentation", trainable)
            code = ensemble_main([str(outcome.paths.root), *REFIT])
        runs.append((code, _calls(logs / str(number)), json.loads((folder / "report.json").read_text())))
    return cfg, outcome, plan, folder, data, splits, runs


@pytest.mark.slow
def test_a_failed_fold_trial_leaves_its_config_out_and_the_others_are_kept(refitted):
    _, _, plan, _, _, splits, runs = refitted
    code, calls, report = runs[0]
    assert code == 0 and len(calls) == 4  # every (config, fold) ran once
    assert all(not set(c["names"]) & set(splits["test"]) for c in calls)  # no trial was given a test image
    assert report["fit"]["configs_left_out"] == plan.configs[1].trial_id
    assert [m["trial_id"] for m in report["members"]] == [plan.configs[0].trial_id]


@pytest.mark.slow
def test_the_same_command_again_runs_only_the_unfinished_trial(refitted):
    _, _, plan, _, _, _, runs = refitted
    code, calls, report = runs[1]
    assert code == 0
    assert [(c["lr"], c["val"]) for c in calls] == [(plan.configs[1].params["lr"], list(plan.folds[1]))]
    assert report["fit"]["trials_run_now"] == 1 and report["fit"]["configs_left_out"] == ""
    assert [m["trial_id"] for m in report["members"]] == [c.trial_id for c in plan.configs]


@pytest.mark.slow
def test_report_says_the_fit_was_out_of_fold_on_every_train_and_val_image(refitted):
    _, _, plan, folder, _, splits, runs = refitted
    report = runs[1][2]
    assert report["fit"]["on"] == "out-of-fold" and report["fit"]["images"] == 41 == len(plan.train_val)
    assert report["fit"]["export"] == "folds" and report["fit"]["trials"] == 4
    assert report["test_images"] == len(splits["test"]) == 7
    assert all(r["fit"] == "out-of-fold" and r["fit_images"] == 41 for r in report["candidates"])
    header = (folder / "report.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["candidate", "chosen", "fit", "fit_images"]
    assert all(isinstance(report["checkpoints"][m["trial_id"]], list) and len(report["checkpoints"][m["trial_id"]]) == 2
               for m in report["members"])


@pytest.mark.slow
def test_each_train_and_val_image_has_the_map_of_the_fold_model_that_did_not_see_it(refitted):
    _, _, plan, folder, data, splits, runs = refitted
    from trainables import load_model, reference_logits
    report, config = runs[1][2], plan.configs[0]
    stored = sorted(p.stem for p in (folder / "probabilities" / config.trial_id).glob("*.npy"))
    assert stored == sorted(plan.train_val + splits["test"])
    image = plan.folds[1][0]
    held_out_by, trained_on = (load_model(report["checkpoints"][config.trial_id][f]) for f in (1, 0))
    picture = data.images[data.index_of()[image]]
    with torch.no_grad():
        expected, other = (torch.softmax(reference_logits(m, picture, c), 1)[0].numpy() for m, c in (held_out_by,
                                                                                                    trained_on))
    kept = np.load(folder / "probabilities" / config.trial_id / f"{image}.npy").astype(np.float32)
    assert np.abs(kept - expected).max() < 2e-3 and np.abs(kept - other).max() > 1e-2


@pytest.mark.slow
def test_fold_trials_are_mlflow_children_of_the_search_tagged_with_rank_and_fold(refitted):
    cfg, outcome, plan, _, _, _, runs = refitted
    trials = {t for m in runs[1][2]["members"] for t in m["refit_trials"].values()}  # this refit's Ray trials
    client = MlflowClient(cfg.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.mlflow_experiment).experiment_id
    runs = [r for r in client.search_runs([experiment], f"tags.`{names.TAG_KIND}` = 'refit'")
            if r.data.tags[names.TAG_TRIAL_ID] in trials]
    assert all(r.data.tags["mlflow.parentRunId"] == outcome.parent_run_id for r in runs)
    assert sorted((r.data.tags[names.TAG_REFIT_RANK], r.data.tags[names.TAG_REFIT_FOLD], r.data.tags[names.TAG_REFIT_OF])
                  for r in runs) == [(str(c.rank), f, c.trial_id) for c in plan.configs for f in ("0", "1")]
    assert all(r.info.status == "FINISHED" for r in runs)  # the failed trial's run, rerun, finished in the same run
    ensembles = client.search_runs([experiment], f"tags.`{names.TAG_KIND}` = 'ensemble'")
    assert {r.data.params["fit"] for r in ensembles} == {"out-of-fold"} and len(ensembles) >= 2  # one a run


@pytest.mark.slow
def test_the_bundle_holds_the_fold_models_and_segtune_predict_runs_it(refitted, tmp_path):
    _, outcome, plan, folder, data, splits, runs = refitted
    from PIL import Image

    from ensembles.bundle import load_bundle
    from ensembles.predict import main as predict_main
    from ensembles.probabilities import ProbabilityStore
    manifest = json.loads((folder / "bundle" / "manifest.json").read_text())
    assert all(set(m["refit_trials"]) == {"0", "1"} for m in manifest["members"])
    images = tmp_path / "images"
    images.mkdir()
    for image_id in splits["test"][:2]:
        Image.fromarray(data.images[data.index_of()[image_id]]).save(images / f"{image_id}.png")
    assert predict_main([str(folder / "bundle"), str(images), str(tmp_path / "out")]) == 0
    mask = np.array(Image.open(tmp_path / "out" / f"{splits['test'][0]}.png"))
    assert mask.shape == data.masks[0].shape and mask.max() < 4
    # the exported network gives the weighted mean of the members' test maps, each the mean of its fold models
    weights = np.array([m["weight"] for m in manifest["members"]]) / sum(m["weight"] for m in manifest["members"])
    store = ProbabilityStore(folder / "probabilities", [m["trial_id"] for m in manifest["members"]])
    expected = np.tensordot(weights, store.stack(splits["test"][0]), 1)
    picture = data.images[data.index_of()[splits["test"][0]]].astype(np.float32).transpose(2, 0, 1)[None]
    assert np.abs(load_bundle(folder / "bundle", "onnx").predict(picture)[0] - expected).max() < 2e-3


@pytest.mark.slow
def test_a_third_run_starts_no_ray_and_bad_options_are_refused_before_ray(refitted, monkeypatch):
    _, outcome, _, folder, _, _, _ = refitted
    monkeypatch.setattr("search.refit.start_ray", lambda cfg: pytest.fail("Ray was started"))
    assert ensemble_main([str(outcome.paths.root), *REFIT]) == 0  # every trial finished: nothing to run
    for options, refusal in ((["--refit-folds", "2", "--refit-top", "3"], "option --refit-top: 3, but the search has 2"),
                             (["--refit-folds", "99", "--refit-top", "2"], "option --refit-folds: 99 folds of 41 images"),
                             (["--refit-folds", "1"], "option --refit-folds: 1; use 2 or more")):
        with pytest.raises(SystemExit, match=refusal):
            ensemble_main([str(outcome.paths.root), *options])
    assert not {"refit-k2-top3", "refit-k99-top2", "refit-k1-top5"} & {p.name for p in folder.parent.iterdir()}


@pytest.mark.slow
def test_refit_all_exports_each_config_retrained_on_train_and_val_and_library_selects_among_the_refits(refitted):
    cfg, outcome, plan, _, data, splits, _ = refitted
    from trainables import load_model, reference_logits
    assert ensemble_main([str(outcome.paths.root), "--refit-folds", "2", "--refit-top", "2", "--refit-all", "--top-k",
                          "1", "--select", "library", "--candidates", "best_single,mean,library", "--folds", "2",
                          "--no-register"]) == 0
    folder = outcome.paths.ensemble.root / "refit-k2-top2-all"
    report = json.loads((folder / "report.json").read_text())
    assert report["fit"]["export"] == "all" and report["fit"]["trials"] == 6 and report["fit"]["images"] == 41
    assert report["library"] == [c.trial_id for c in plan.configs]  # the library: every refitted config
    assert next(r for r in report["candidates"] if r["candidate"] == "mean")["members"] == f"{plan.configs[0].trial_id} x1"
    for member in report["members"]:  # one network a member: its config trained on all 41 images
        assert report["checkpoints"][member["trial_id"]].split("/")[-3].endswith("_foldall")
        assert set(member["refit_trials"]) == {"0", "1", ALL}
    config, image = plan.configs[0], splits["test"][0]
    model, trial_cfg = load_model(report["checkpoints"][config.trial_id])
    with torch.no_grad():
        expected = torch.softmax(reference_logits(model, data.images[data.index_of()[image]], trial_cfg), 1)[0].numpy()
    kept = np.load(folder / "probabilities" / config.trial_id / f"{image}.npy").astype(np.float32)
    assert np.abs(kept - expected).max() < 2e-3  # test is scored with the exported (all-data) model
    client = MlflowClient(cfg.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.mlflow_experiment).experiment_id],
                              f"tags.`{names.TAG_REFIT_FOLD}` = 'all'")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
