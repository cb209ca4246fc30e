"""`segtune ensemble --refit-folds K --refit-top M`: the M best configs retrained on K folds of train+val as Ray Tune
trials, the candidates fitted on their out-of-fold maps, the fold models exported; resumable, logged to MLflow; the
report's search_best row: the search's best trial as the search trained it, never chosen nor exported."""

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from test_bootstrap import A, B, C1, C2

from ensembles.bootstrap import RESAMPLES, bootstrap_intervals
from ensembles.build import reference_row
from ensembles.combine import (FOLD_AVERAGE, PER_FOLD, EnsembleModule, FoldAverage, PerFold, PixelLogistic, WeightedMean,
                               fold_form)
from ensembles.fit import Fitted
from ensembles.members import Member
from ensembles.probabilities import ProbabilityStore, fold_stores
from ensembles.protocol import Evaluation, combined_probabilities
from ensembles.refit import RefitOptions, plan_refit
from ensembles.report import REFERENCE, format_table, reference_line, write_table
from ensembles.run import main as ensemble_main
from search import load_config, run_search, search_inputs
from search.refit import ALL, check_refit, check_saved_plan
from search.run import SMOKE_TEST
from segtune import names
from segtune.paths import EnsemblePaths

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


class Constant(torch.nn.Module):
    """A network whose logits are the same at every pixel of every image."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1, *x.shape[2:])


def _giving(probs) -> Constant:
    """A network whose class probabilities are `probs` everywhere (softmax of log p is p when p sums to 1)."""
    return Constant([float(np.log(p)) for p in probs])


def test_fold_average_gives_the_mean_of_its_networks_probabilities():
    # logits [0, 0] -> [0.5, 0.5]; [log 3, 0] -> [0.75, 0.25]; their mean [0.625, 0.375]
    average = FoldAverage([Constant([0.0, 0.0]), Constant([float(np.log(3.0)), 0.0])])
    probs = torch.softmax(average(torch.zeros(1, 3, 2, 2)), 1)
    assert torch.allclose(probs[0, :, 0, 0], torch.tensor([0.625, 0.375]), atol=1e-6)


# two configs' fold models: A gives [0.5, 0.5] in fold 0, [0.9, 0.1] in fold 1; B [0.9, 0.1], then [0.5, 0.5]
FOLD_MAPS = {"A": ([0.5, 0.5], [0.9, 0.1]), "B": ([0.9, 0.1], [0.5, 0.5])}


def _stores(folder) -> tuple[ProbabilityStore, list[ProbabilityStore]]:
    """FOLD_MAPS on one 2x3 test image as a refit stores them: each fold model's maps and each config's average."""
    averages = ProbabilityStore(folder / "probabilities", ["A", "B"])
    folds = fold_stores(folder / "fold_probabilities", ["A", "B"], 2)
    for trial_id, maps in FOLD_MAPS.items():
        for store, probs in zip([averages, *folds], [np.mean(maps, 0), *maps]):
            store.file(trial_id, "x").parent.mkdir(parents=True, exist_ok=True)
            np.save(store.file(trial_id, "x"), np.broadcast_to(np.array(probs, np.float32)[:, None, None], (2, 2, 3)))
    return averages, folds


def test_a_stacker_of_fold_models_is_applied_per_fold_and_averaged_in_the_bundle_and_on_test(tmp_path):
    # pixel_logistic at its start: the normalised geometric mean of the members. Per fold, both folds alike:
    # sqrt(0.5 * 0.9) : sqrt(0.5 * 0.1) = 3 : 1 -> [0.75, 0.25], so their mean is [0.75, 0.25]; on the fold averages
    # (A and B both [0.7, 0.3]) it would give [0.7, 0.3]
    stacker = PixelLogistic(2, 2).eval()
    assert fold_form(stacker) == PER_FOLD
    members = [FoldAverage([_giving(p) for p in FOLD_MAPS[c]]) for c in "AB"]
    images = torch.zeros(1, 3, 2, 3)
    with torch.no_grad():
        per_fold = EnsembleModule(members, PerFold(stacker), [0.5] * 3, [0.2] * 3)(images)
        averaged = EnsembleModule(members, stacker, [0.5] * 3, [0.2] * 3)(images)
    assert torch.allclose(per_fold[0, :, 1, 2], torch.tensor([0.75, 0.25]), atol=1e-6)
    assert torch.allclose(averaged[0, :, 1, 2], torch.tensor([0.7, 0.3]), atol=1e-6)
    averages, folds = _stores(tmp_path)  # test scoring, from the stored maps, agrees with the bundle's network
    with torch.no_grad():
        scored = combined_probabilities(Fitted(["A", "B"], stacker), averages, "x", folds)
        unfolded = combined_probabilities(Fitted(["A", "B"], stacker), averages, "x")
    assert torch.allclose(scored[0, :, 1, 2], torch.tensor([0.75, 0.25]), atol=1e-3)  # maps stored as float16
    assert torch.allclose(unfolded[0, :, 1, 2], torch.tensor([0.7, 0.3]), atol=1e-3)
    with pytest.raises(ValueError, match="needs every member made of the same number of fold models"):
        EnsembleModule([members[0], _giving([0.5, 0.5])], PerFold(stacker), [0.5] * 3, [0.2] * 3)


def test_a_weighted_mean_of_fold_models_gives_the_same_on_the_fold_averages_as_per_fold(tmp_path):
    torch.manual_seed(0)
    members = [FoldAverage([torch.nn.Conv2d(3, 4, 1) for _ in range(3)]) for _ in range(2)]  # 2 configs, 3 folds
    combiner = WeightedMean([1.0, 3.0])
    assert fold_form(combiner) == FOLD_AVERAGE  # the cheaper path: the combiner on the fold averages
    images = torch.rand(2, 3, 32, 64) * 255
    with torch.no_grad():
        averaged = EnsembleModule(members, combiner, [0.4] * 3, [0.3] * 3)(images)
        per_fold = EnsembleModule(members, PerFold(combiner), [0.4] * 3, [0.3] * 3)(images)
    assert (averaged - per_fold).abs().max() < 1e-5 and averaged.std() > 1e-2  # the members are not uniform
    averages, folds = _stores(tmp_path)  # on test: A and B both average [0.7, 0.3], whichever form
    with torch.no_grad():
        scored = combined_probabilities(Fitted(["A", "B"], combiner, [1.0, 3.0]), averages, "x", folds)
        by_hand = PerFold(combiner)(torch.from_numpy(np.stack([f.stack("x") for f in folds]))[None])
    assert torch.allclose(scored, by_hand, atol=1e-3) and torch.allclose(scored[0, :, 0, 0], torch.tensor([0.7, 0.3]),
                                                                          atol=1e-3)


# the search_best row on two test images, test_bootstrap's hand-worked matrices: resamples (1, 1), (1, 2), (2, 1), (2, 2)
# score best_single (A, B) 0.775, 0.598214 twice, 0.25 and mean (C1, C2) 1.0, 0.845238 twice, 0.583333; PERFECT, WRONG
# score 1.0, [[2, 2], [2, 2]]'s 1/3 twice, 0.0. A paired gain's 2.5 % and 97.5 % percentiles are its smallest and
# largest of the (1, 1) and (2, 2) values, its point value the mixed one.
PERFECT, WRONG = np.array([[2, 0], [0, 2]]), np.array([[0, 2], [2, 0]])
CLASSES = ["background", "plant"]


def _table_with_search_best(search_best: tuple, chosen: str) -> list[dict]:
    """The candidates best_single (A, B) and mean (C1, C2), `chosen` chosen, and a search_best scoring `search_best`."""
    test = {"best_single": np.stack([A, B]), "mean": np.stack([C1, C2]), REFERENCE: np.stack(search_best)}
    fitted = {"best_single": Fitted(["t1"], WeightedMean([1.0]), [1.0]),
              "mean": Fitted(["t1", "t2"], WeightedMean([1.0, 1.0]), [1.0, 1.0])}
    cv = {name: np.array([[4, 1], [1, 4]]) for name in fitted}  # IoU 4/6 each: cv mIoU 0.6667
    evaluation = Evaluation(cv, {name: test[name] for name in fitted}, fitted, chosen, [["v1"], ["v2"]])
    rows = evaluation.table((), CLASSES, bootstrap_intervals(test, "best_single", seed=0))
    return rows + [reference_row("t0", test, chosen, rows[0], (), CLASSES, RESAMPLES, 0)]


@pytest.mark.parametrize("search_best, chosen, gain, verdict, says", [
    # best_single - search_best: 0.775 - 1 = -0.225, 0.598214 - 0.845238 = -0.247024, 0.25 - 0.583333 = -0.333333
    ((C1, C2), "best_single", (-0.247024, -0.333333, -0.225), "below zero",
     "is below search_best, the search's best trial t0 as the search trained it (0.8452): gain -0.2470, 95 % interval "
     "[-0.3333, -0.2250], entirely below zero; on this test split the plain `segtune ensemble EXP` bundle (without "
     "--refit-folds) is the better export"),
    # 0.775 - 1 = -0.225, 0.598214 - 1/3 = +0.264881, 0.25 - 0 = +0.25
    ((PERFECT, WRONG), "best_single", (0.264881, -0.225, 0.264881), "cannot be told from zero",
     "the refit's chosen best_single (test mIoU 0.5982) and search_best, the search's best trial t0 as the search "
     "trained it (0.3333), cannot be told apart on this test split: gain +0.2649, 95 % interval [-0.2250, +0.2649] "
     "holds zero"),
    # mean - search_best (A, B): 1 - 0.775 = 0.225, 0.845238 - 0.598214 = 0.247024, 0.583333 - 0.25 = 0.333333
    ((A, B), "mean", (0.247024, 0.225, 0.333333), "above zero",
     "entirely above zero; on this test split the refit's bundle is the better export"),
])
def test_search_best_gain_is_the_chosen_candidates_paired_gain_over_it_and_the_line_follows_its_interval(
        search_best, chosen, gain, verdict, says):
    rows = _table_with_search_best(search_best, chosen)
    row, picked = rows[-1], next(r for r in rows if r["chosen"])
    assert row["candidate"] == REFERENCE and not row["chosen"] and picked["candidate"] == chosen
    assert row["cv_miou"] is None and row["cv_iou_plant"] is None and row["members"] == "t0"
    assert (row["gain"], row["gain_low"], row["gain_high"]) == pytest.approx(gain, abs=1e-6)
    assert row["gain"] == pytest.approx(picked["test_miou"] - row["test_miou"]) and row["gain_verdict"] == verdict
    line = reference_line(rows, "EXP")
    assert says in line
    assert ("plain `segtune ensemble" in line) == (verdict == "below zero")
    assert ("cannot be told apart" in line) == (verdict == "cannot be told from zero")


def test_search_best_row_is_in_json_csv_and_console_without_cv_scores(tmp_path):
    rows = _table_with_search_best((C1, C2), "best_single")
    row = rows[-1]  # C1, C2: 0.845238, resampled between 0.583333 and 1.0
    assert (row["test_miou"], row["test_miou_low"], row["test_miou_high"]) == pytest.approx((0.845238, 0.583333, 1.0),
                                                                                           abs=1e-6)
    assert row["test_iou_plant"] == pytest.approx(5 / 6)  # C1 + C2 = [[6, 0], [1, 5]]: plant 5/(5+6-5)
    folder = EnsemblePaths(tmp_path / "refit")
    write_table(rows, folder, {"chosen": "best_single"})
    saved = json.loads(folder.report.read_text())["candidates"][-1]
    assert saved["candidate"] == REFERENCE and saved["cv_miou"] is None and saved["chosen"] is False
    with folder.table.open() as handle:
        table = list(csv.DictReader(handle))
    assert (table[-1]["candidate"], table[-1]["cv_miou"], table[-1]["test_miou"], table[-1]["gain_low"]) == (
        REFERENCE, "", "0.8452", "-0.3333")
    console = format_table(rows).splitlines()
    assert console[-1] == ("search_best             -    0.8452 [0.583, 1.000]  -0.2470 [-0.333, -0.225] below zero "
                           "(chosen minus search_best)")
    assert "<- chosen" in console[1] and "<- chosen" not in console[-1]


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
    assert all(r["fit"] == "out-of-fold" and r["fit_images"] == 41 for r in report["candidates"]
               if r["candidate"] != REFERENCE)
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
def test_search_best_is_the_search_trials_own_checkpoint_on_test_never_chosen_nor_exported(refitted):
    cfg, outcome, _, folder, data, splits, runs = refitted
    from segtune.metrics import confusion_matrix, mean_iou
    from segtune.storage import local_checkpoint
    from trainables import load_model, reference_logits
    report, best = runs[1][2], outcome.best  # the search's leaderboard, read here, not through the ensemble
    row = next(r for r in report["candidates"] if r["candidate"] == REFERENCE)
    assert row["members"] == best.trial_id == report["reference"]["trial_id"]
    model, trial_cfg = load_model(local_checkpoint(best.checkpoint, outcome.paths))
    index, matrix = data.index_of(), np.zeros((data.num_classes,) * 2, dtype=np.int64)
    with torch.no_grad():  # the trial's checkpoint scored on each test image directly, float32, argmax of its logits
        for image in splits["test"]:
            logits = reference_logits(model, data.images[index[image]], trial_cfg)
            matrix += confusion_matrix(torch.from_numpy(data.masks[index[image]].astype(np.int64)), logits.argmax(1)[0],
                                       data.num_classes).numpy()
    exclude = tuple(data.classes.index(c) for c in cfg.exclude_from_mean)
    assert row["test_miou"] == pytest.approx(mean_iou(matrix, exclude), abs=1e-3)  # its maps are stored float16
    assert sorted(p.stem for p in (folder / REFERENCE / best.trial_id).glob("*.npy")) == sorted(splits["test"])
    chosen = next(r for r in report["candidates"] if r["chosen"])
    assert report["chosen"] == chosen["candidate"] != REFERENCE and row["chosen"] is False and row["cv_miou"] is None
    assert row["gain"] == pytest.approx(chosen["test_miou"] - row["test_miou"])
    line = report["reference"]["line"]
    if row["gain_high"] < 0:
        assert "is the better export" in line and "plain `segtune ensemble" in line
    elif row["gain_low"] > 0:
        assert "the refit's bundle is the better export" in line
    else:
        assert "cannot be told apart on this test split" in line and "better export" not in line
    manifest = json.loads((folder / "bundle" / "manifest.json").read_text())
    assert manifest["combiner"]["kind"] == chosen["candidate"]
    assert manifest["scores"]["test_miou"] == pytest.approx(chosen["test_miou"])
    with (folder / "report.csv").open() as handle:
        saved = next(r for r in csv.DictReader(handle) if r["candidate"] == REFERENCE)
    assert saved["cv_miou"] == "" and saved["chosen"] == "False" and saved["test_miou"] == f"{row['test_miou']:.4f}"
    client = MlflowClient(cfg.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.mlflow_experiment).experiment_id
    logged = [r for r in client.search_runs([experiment], f"tags.`{names.TAG_KIND}` = 'ensemble'")
              if "search_best_test_miou" in r.data.metrics]
    assert len(logged) >= 2 and all(r.data.params["search_best_trial"] == best.trial_id for r in logged)
    assert all(r.data.metrics["search_best_test_miou"] == pytest.approx(row["test_miou"]) for r in logged)
    assert all("search_best_cv_miou" not in r.data.metrics for r in logged)


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
def test_a_stacker_chosen_over_fold_models_is_scored_as_its_bundle_predicts(refitted, tmp_path):
    cfg, outcome, plan, folder, data, splits, _ = refitted
    from ensembles.bundle import load_bundle
    from ensembles.predict import predict_image
    from segtune.metrics import confusion_matrix, mean_iou
    assert ensemble_main([str(outcome.paths.root), "--refit-folds", "2", "--refit-top", "2", "--folds", "2",
                          "--candidates", "context_head", "--no-register"]) == 0
    report = json.loads((folder / "report.json").read_text())
    manifest = json.loads((folder / "bundle" / "manifest.json").read_text())
    assert report["chosen"] == "context_head" and report["fold_form"] == {"context_head": PER_FOLD}
    assert manifest["combiner"] == {"kind": "context_head", "fold_form": PER_FOLD}
    ids = [c.trial_id for c in plan.configs]
    assert all(sorted(p.stem for p in (folder / "fold_probabilities" / str(f) / t).glob("*.npy")) == sorted(
        splits["test"]) for f in (0, 1) for t in ids)  # each fold model's own test maps
    bundle, index = load_bundle(folder / "bundle", "onnx"), data.index_of()
    exclude = tuple(data.classes.index(c) for c in cfg.exclude_from_mean)
    matrix = np.zeros((data.num_classes,) * 2, dtype=np.int64)
    for image_id in splits["test"]:  # `segtune predict`'s path, image by image
        predicted = predict_image(bundle, data.images[index[image_id]]).argmax(0)
        matrix += confusion_matrix(torch.from_numpy(data.masks[index[image_id]].astype(np.int64)),
                                   torch.from_numpy(predicted), data.num_classes).numpy()
    row = next(r for r in report["candidates"] if r["chosen"])
    assert mean_iou(matrix, exclude) == pytest.approx(row["test_miou"], abs=1e-3)  # test maps are stored float16


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
