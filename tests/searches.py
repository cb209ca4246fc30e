"""One real smoke search per test session, shared by the search and ensemble tests (a fixture in conftest),
and the helpers the driver's tests with a dummy trainable share with it."""

import optuna
import pytest
import ray

from fakes import BROKEN_ENCODER
from search import load_config, run_search
from search.run import SMOKE_TEST
from spaces import SPACES, smoke_space

N_STARTUP = 2


@pytest.fixture(scope="session")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def smoke_space_with_a_broken_trial(trial):
    """Trial 1 names an encoder timm does not have: building its model raises inside the trial."""
    smoke_space(trial)
    return {"encoder": BROKEN_ENCODER} if trial.number == 1 else None


@pytest.fixture(scope="session")
def finished_search(local_ray, tmp_path_factory):
    folder = tmp_path_factory.mktemp("search")
    space = pytest.MonkeyPatch()
    space.setitem(SPACES, "smoke_broken", smoke_space_with_a_broken_trial)  # registered while the experiment is read
    cfg = load_config(None, {**SMOKE_TEST, "space": "smoke_broken", "num_samples": 7, "max_epochs": 3,
                             "n_startup_trials": N_STARTUP, "name": "e2e", "storage_path": str(folder),
                             "tracking_uri": f"sqlite:///{folder}/mlflow.db"})
    outcome, proposed_by_tpe = search_watching_tpe(cfg)
    yield cfg, outcome, proposed_by_tpe
    space.undo()


def search_watching_tpe(cfg, **run_options):
    """run_search(cfg, **run_options) and the numbers of the trials TPE proposed (the others were random)."""
    proposed_by_tpe = []
    original = optuna.samplers.TPESampler._sample

    def spy(self, study, trial, search_space):
        proposed_by_tpe.append(trial.number)
        return original(self, study, trial, search_space)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(optuna.samplers.TPESampler, "_sample", spy)
        return run_search(cfg, **run_options), proposed_by_tpe
