"""The Optuna study in a database (search/study.py, search/searcher.py) without Ray: the study_storage option, the
searcher's trials in the database (the same proposals as the in-memory study for a seed), a restored searcher
finding its trials, and the reconciliation with Ray's saved state as a function of two trial lists."""

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

import search.study
from search import load_config
from search.searcher import RAY_TRIAL_ID, AshaAwareOptunaSearch, build_sampler
from search.study import (RayTrial, check_new_study, new_study, open_storage, reconcile, reconcile_study,
                          study_exists, write_study)
from segtune import names
from spaces import smoke_space

OBJECTIVE = {"metric": names.OBJECTIVE, "mode": names.OBJECTIVE_MODE}
MAX_EPOCHS = 4
LR = FloatDistribution(1e-3, 3e-2, log=True)
LOSS = CategoricalDistribution(["cross_entropy", "cross_entropy_dice"])


def result(epoch: int, miou: float, best: float | None = None) -> dict:
    """What the trainable reports at an epoch (training_iteration is Ray's count of reports)."""
    return {names.OBJECTIVE: miou, names.BEST_VAL_MIOU: miou if best is None else best, names.EPOCH: epoch,
            "training_iteration": epoch}


# --- the option ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, says", [
    ("not a url", "not a database URL"),
    ("http://127.0.0.1:5000", "not a database URL"),
    ("sqlite://", "in memory"),
    ("sqlite:///:memory:", "in memory"),
    ("postgresql://user:secret@db.example/studies", "holds a password"),
    ("mysql://db.example/studies", "driver is not installed"),
])
def test_a_study_storage_that_cannot_hold_the_study_is_refused_naming_the_option(url, says):
    with pytest.raises(ValueError, match=f"option study_storage: .*{says}") as refused:
        load_config(None, {"study_storage": url})
    assert "secret" not in str(refused.value)


def test_a_relative_sqlite_study_storage_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a resumed search may run from another folder
    assert load_config(None, {"study_storage": "sqlite:///studies/all.db"}).study_storage == \
        f"sqlite:///{tmp_path}/studies/all.db"
    assert load_config(None, {}).study_storage is None  # the experiment folder's segtune/study.db


def test_a_database_that_cannot_be_opened_is_refused_naming_study_storage(tmp_path):
    with pytest.raises(ConnectionError, match="study_storage sqlite:///.*/missing/folder/s.db cannot be opened"):
        open_storage(f"sqlite:///{tmp_path}/missing/folder/s.db")


def test_a_new_search_refuses_a_study_of_its_name_and_asking_makes_no_database(tmp_path):
    url = f"sqlite:///{tmp_path}/studies.db"
    check_new_study(url, "first")
    assert not (tmp_path / "studies.db").exists()  # looking made no file
    new_study(open_storage(url), "first")
    check_new_study(url, "second")  # one database holds many searches
    with pytest.raises(FileExistsError, match="already holds a study named first.*optuna delete-study"):
        check_new_study(url, "first")


# --- the searcher's study -------------------------------------------------------------------------------------------

def searcher_on(url: str, seed: int = 0, name: str = "search") -> AshaAwareOptunaSearch:
    cfg = load_config(None, {"space": "smoke", "num_samples": 8, "n_startup_trials": 2, "seed": seed})
    storage = open_storage(url)
    new_study(storage, name)
    return AshaAwareOptunaSearch(space=smoke_space, sampler=build_sampler(cfg), storage=storage, study_name=name,
                                 max_epochs=MAX_EPOCHS, **OBJECTIVE)


def proposals(searcher, count: int = 6) -> list[dict]:
    """The first `count` configs, each trial finishing at max_epochs with a score that depends on its lr."""
    configs = []
    for number in range(count):
        config = searcher.suggest(f"t{number}")
        configs.append(config)
        searcher.on_trial_complete(f"t{number}", result(MAX_EPOCHS, 1 - abs(config["lr"] - 0.01) * 10))
    return configs


def test_the_same_seed_proposes_the_same_configs_as_the_in_memory_study_did(tmp_path):
    cfg = load_config(None, {"space": "smoke", "num_samples": 8, "n_startup_trials": 2, "seed": 0})
    in_memory = proposals(OptunaSearch(space=smoke_space, sampler=build_sampler(cfg), **OBJECTIVE))
    first = proposals(searcher_on(f"sqlite:///{tmp_path}/a.db", seed=0))
    second = proposals(searcher_on(f"sqlite:///{tmp_path}/b.db", seed=0))
    assert first == second == in_memory  # 2 random start-up trials, then 4 TPE proposals
    assert proposals(searcher_on(f"sqlite:///{tmp_path}/c.db", seed=1)) != first


def test_the_study_records_each_trial_with_its_ray_id_params_and_final_value(tmp_path):
    searcher = searcher_on(f"sqlite:///{tmp_path}/s.db")
    configs = [searcher.suggest(trial_id) for trial_id in ("done", "stopped", "failed", "running")]
    searcher.on_trial_result("done", result(1, 0.4))
    searcher.on_trial_complete("done", result(MAX_EPOCHS, 0.5, best=0.6))  # finished: its best epoch's score
    searcher.on_trial_complete("stopped", result(2, 0.3))  # ASHA stopped it at epoch 2 of 4
    searcher.on_trial_complete("failed", None, error=True)

    study = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path}/s.db")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE and study.metric_names == [names.OBJECTIVE]
    trials = {t.user_attrs[RAY_TRIAL_ID]: t for t in study.trials}
    assert [trials[t].params for t in ("done", "stopped", "failed", "running")] == configs
    assert (trials["done"].state, trials["done"].value, trials["done"].intermediate_values) == \
        (TrialState.COMPLETE, 0.6, {1: 0.4})
    assert (trials["stopped"].state, trials["stopped"].intermediate_values) == (TrialState.PRUNED, {2: 0.3})
    assert trials["failed"].state == TrialState.FAIL and trials["running"].state == TrialState.RUNNING


def test_a_restored_searcher_goes_on_with_the_trials_in_the_database(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    searcher = searcher_on(url)
    proposals(searcher, 2)
    running = searcher.suggest("t2")
    searcher.save(str(tmp_path / "state.pkl"))
    assert b"sqlite" not in (tmp_path / "state.pkl").read_bytes()  # the saved state holds no study, no database

    restored = AshaAwareOptunaSearch(max_epochs=MAX_EPOCHS)
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.study is None
    restored.attach(open_storage(url))
    restored.on_trial_result("t2", result(1, 0.2))
    restored.on_trial_complete("t2", result(MAX_EPOCHS, 0.7))
    trials = restored.study.trials
    assert len(trials) == 3 and trials[2].params == running and trials[2].user_attrs[RAY_TRIAL_ID] == "t2"
    assert (trials[2].state, trials[2].value, trials[2].intermediate_values) == (TrialState.COMPLETE, 0.7, {1: 0.2})
    # the sampler went on from its saved state: the next proposal is the one the original searcher makes
    assert restored.suggest("t3") == searcher_after_same_steps(tmp_path).suggest("t3")


def searcher_after_same_steps(tmp_path) -> AshaAwareOptunaSearch:
    searcher = searcher_on(f"sqlite:///{tmp_path}/again.db")
    proposals(searcher, 2)
    searcher.suggest("t2")
    searcher.on_trial_result("t2", result(1, 0.2))
    searcher.on_trial_complete("t2", result(MAX_EPOCHS, 0.7))
    return searcher


# --- reconciliation with Ray's saved state ---------------------------------------------------------------------------

def study_trial(number: int, ray_id: str | None, state=TrialState.COMPLETE, value=None, lr=0.01,
                intermediate=None, queued=False) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(
        state=state, value=value if value is not None else (0.5 if state == TrialState.COMPLETE else None),
        params={"lr": lr, "loss": "cross_entropy"}, distributions={"lr": LR, "loss": LOSS},
        user_attrs={RAY_TRIAL_ID: ray_id} if ray_id else {}, intermediate_values=intermediate or {},
        system_attrs={"fixed_params": {"lr": lr, "loss": "cross_entropy"}} if queued else {})
    trial.number = number
    return trial


def two_parameter_space(trial):
    trial.suggest_float("lr", 1e-3, 3e-2, log=True)
    trial.suggest_categorical("loss", ["cross_entropy", "cross_entropy_dice"])
    return {"encoder_depth": 3}  # a constant the space returns: in Ray's config, not an Optuna parameter


def summary(trials) -> list[tuple]:
    return [(t.user_attrs.get(RAY_TRIAL_ID), t.state.name, t.value, t.intermediate_values) for t in trials]


def test_a_study_that_agrees_with_ray_is_left_as_it_is():
    study = [study_trial(0, "a"), study_trial(1, "b", TrialState.RUNNING, intermediate={1: 0.2})]
    reconciled = reconcile([RayTrial("a", "TERMINATED"), RayTrial("b", "RUNNING")], study, two_parameter_space,
                           MAX_EPOCHS)
    assert not reconciled.changed and reconciled.trials == study


def test_a_trial_asked_after_rays_last_snapshot_is_dropped_and_a_recipe_queued_again():
    study = [study_trial(0, "a"), study_trial(1, "ghost", TrialState.RUNNING),
             study_trial(2, "recipe-ghost", TrialState.COMPLETE, lr=0.02, queued=True),
             study_trial(3, None, TrialState.RUNNING)]  # killed between Optuna's ask and its ray id
    reconciled = reconcile([RayTrial("a", "TERMINATED")], study, two_parameter_space, MAX_EPOCHS)
    assert reconciled.dropped == [1, 2, 3] and reconciled.requeued == [2]
    assert summary(reconciled.trials) == [("a", "COMPLETE", 0.5, {}), (None, "WAITING", None, {})]
    assert reconciled.trials[1].system_attrs["fixed_params"] == {"lr": 0.02, "loss": "cross_entropy"}


def test_a_trial_finished_in_the_study_but_not_in_rays_snapshot_runs_again_keeping_its_history():
    study = [study_trial(0, "a", TrialState.PRUNED, intermediate={1: 0.2, 2: 0.3})]
    reconciled = reconcile([RayTrial("a", "RUNNING")], study, two_parameter_space, MAX_EPOCHS)
    assert reconciled.reopened == ["a"]
    assert summary(reconciled.trials) == [("a", "RUNNING", None, {1: 0.2, 2: 0.3})]
    assert reconciled.trials[0].params == study[0].params and reconciled.trials[0].datetime_complete is None


def test_a_trial_ray_finished_is_told_its_last_result_by_the_searchers_rule():
    study = [study_trial(0, "finished", TrialState.RUNNING, intermediate={1: 0.4}),
             study_trial(1, "stopped", TrialState.RUNNING, intermediate={1: 0.2}),
             study_trial(2, "errored", TrialState.RUNNING)]
    ray = [RayTrial("finished", "TERMINATED", last_result=result(MAX_EPOCHS, 0.5, best=0.6)),
           RayTrial("stopped", "TERMINATED", last_result=result(2, 0.3)),  # ASHA stopped it at epoch 2 of 4
           RayTrial("errored", "ERROR", last_result=result(1, 0.1))]  # Ray tells an error without a result
    reconciled = reconcile(ray, study, two_parameter_space, MAX_EPOCHS)
    assert reconciled.told == ["finished", "stopped", "errored"]
    assert summary(reconciled.trials) == [("finished", "COMPLETE", 0.6, {1: 0.4}),
                                          ("stopped", "PRUNED", 0.3, {1: 0.2, 2: 0.3}),  # as Optuna tells it
                                          ("errored", "FAIL", None, {})]


@pytest.mark.parametrize("last, error", [(result(MAX_EPOCHS, 0.5, best=0.6), False), (result(2, 0.3), False),
                                         (None, True)])
def test_a_trial_told_from_rays_state_ends_as_the_searcher_tells_it(tmp_path, last, error):
    searcher = searcher_on(f"sqlite:///{tmp_path}/s.db")
    searcher.suggest("t0")
    searcher.on_trial_result("t0", result(1, 0.2))
    running = searcher.study.trials[0]
    searcher.on_trial_complete("t0", last, error=error)
    told_by_searcher = searcher.study.trials[0]
    [told] = reconcile([RayTrial("t0", "ERROR" if error else "TERMINATED", last_result=last or {})], [running],
                       smoke_space, MAX_EPOCHS).trials
    assert (told.state, told.value, told.intermediate_values) == \
        (told_by_searcher.state, told_by_searcher.value, told_by_searcher.intermediate_values)


def test_a_ray_trial_the_study_lacks_is_made_from_its_config_after_the_studys_own():
    study = [study_trial(0, "a"), study_trial(1, None, TrialState.WAITING, queued=True)]
    ray = [RayTrial("lost", "TERMINATED", {"lr": 0.004, "loss": "cross_entropy_dice", "encoder_depth": 3},
                    result(MAX_EPOCHS, 0.7)),
           RayTrial("a", "TERMINATED"),
           RayTrial("lost-running", "PENDING", {"lr": 0.02, "loss": "cross_entropy", "encoder_depth": 3})]
    reconciled = reconcile(ray, study, two_parameter_space, MAX_EPOCHS)
    assert reconciled.made == ["lost", "lost-running"]
    assert summary(reconciled.trials) == [("a", "COMPLETE", 0.5, {}), (None, "WAITING", None, {}),
                                          ("lost", "COMPLETE", 0.7, {}), ("lost-running", "RUNNING", None, {})]
    made = reconciled.trials[2]
    assert made.params == {"lr": 0.004, "loss": "cross_entropy_dice"}  # encoder_depth is no Optuna parameter
    assert made.distributions == {"lr": LR, "loss": LOSS}


def test_a_ray_trial_whose_config_is_no_point_of_the_space_is_left_out_and_named():
    ray = [RayTrial("overridden", "TERMINATED", {"lr": 0.01, "loss": "focal"}, result(MAX_EPOCHS, 0.7)),
           RayTrial("partial", "TERMINATED", {"lr": 0.01}, result(MAX_EPOCHS, 0.7))]
    reconciled = reconcile(ray, [], two_parameter_space, MAX_EPOCHS)
    assert reconciled.trials == [] and reconciled.unmade == ["overridden", "partial"] and reconciled.changed
    assert "2 not in the database and not a point of the space" in reconciled.describe()


def test_reconcile_study_rewrites_a_study_only_when_it_disagrees(tmp_path, monkeypatch):
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    write_study(storage, "search", [study_trial(0, "a"), study_trial(1, "ghost", TrialState.RUNNING),
                                    study_trial(2, "b", TrialState.RUNNING)])
    ray = [RayTrial("a", "TERMINATED"), RayTrial("b", "RUNNING")]
    written = []
    monkeypatch.setattr(search.study, "write_study", lambda *args: written.append(args) or write_study(*args))

    reconciled = reconcile_study(storage, "search", ray, two_parameter_space, MAX_EPOCHS)
    study = optuna.load_study(study_name="search", storage=storage)
    assert reconciled.dropped == [1] and summary(study.trials) == [("a", "COMPLETE", 0.5, {}),
                                                                   ("b", "RUNNING", None, {})]
    assert [t.number for t in study.trials] == [0, 1] and study.metric_names == [names.OBJECTIVE]
    assert len(optuna.study.get_all_study_names(storage)) == 1 and len(written) == 1
    again = reconcile_study(storage, "search", ray, two_parameter_space, MAX_EPOCHS)
    assert not again.changed and len(written) == 1  # a study that agrees is not written again


def test_a_missing_study_is_made_from_rays_trials(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    reconcile_study(open_storage(url), "search", [RayTrial("a", "TERMINATED", {"lr": 0.01, "loss": "cross_entropy"},
                                                           result(MAX_EPOCHS, 0.4))], two_parameter_space, MAX_EPOCHS)
    assert study_exists(url, "search")
    assert summary(optuna.load_study(study_name="search", storage=url).trials) == [("a", "COMPLETE", 0.4, {})]
