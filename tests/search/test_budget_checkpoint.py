"""A leaderboard row's checkpoint holds the model that scored the row's val mIoU, also for the trials an
epoch_budget (or time_budget_s) stopped: Ray stops those before it registers the checkpoint of their last report.
"""

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow.fs as pafs
import pytest
import torch

from search import load_config, run_search
from search.report import leaderboard_rows
from search.run import SMOKE_TEST
from segtune import names
from trainables import load_model

MAX_EPOCHS = 6
BUDGET = 4
"""Epochs of the whole search: the one trial is stopped after its 4th of 6."""


def stored(folder) -> dict:
    return torch.load(Path(folder) / names.CHECKPOINT_FILE, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def budget_search(local_ray, tmp_path_factory):
    """One trial at a fixed lr that learns (its val mIoU rises epoch on epoch on the synthetic data), ended by
    epoch_budget in its 4th epoch of 6."""
    folder = tmp_path_factory.mktemp("budget_search")
    cfg = load_config(None, {**SMOKE_TEST, "num_samples": 1, "max_concurrent_trials": 1, "max_epochs": MAX_EPOCHS,
                             "epoch_budget": BUDGET, "steps_per_epoch": 2, "crop": (32, 32),
                             "space_overrides": {"lr": 0.001, "loss": "cross_entropy"},
                             "name": "budget", "storage_path": str(folder),
                             "tracking_uri": f"sqlite:///{folder}/mlflow.db"})
    return run_search(cfg)


@pytest.mark.slow
def test_every_row_checkpoint_holds_the_epoch_of_its_val_miou(budget_search):
    frames = {r.metrics["trial_id"]: r.metrics_dataframe for r in budget_search.results}
    for row in budget_search.leaderboard:
        frame = frames[row.trial_id]
        state = stored(row.checkpoint)
        # the checkpoint's own record: the val mIoU its model scored is the row's, at the epoch that scored it
        assert state["history"][-1] == pytest.approx(row.val_miou, rel=1e-9)
        scored_at = int(frame.loc[frame[names.VAL_MIOU].sub(row.val_miou).abs().idxmin(), names.EPOCH])
        assert state["epoch"] == scored_at
        assert row.val_miou == pytest.approx(frame[names.VAL_MIOU].max(), rel=1e-9)  # the best epoch's checkpoint exists
        load_model(Path(row.checkpoint) / names.CHECKPOINT_FILE)
    [row] = budget_search.leaderboard
    assert row.epochs == BUDGET < MAX_EPOCHS and row.outcome == "stopped_early"


@pytest.mark.slow
def test_the_search_hit_the_case_ray_leaves_unregistered(budget_search):
    """The trial's best epoch is its last, whose checkpoint Ray did not register: what the fix must find."""
    [result] = budget_search.results
    frame = result.metrics_dataframe
    assert int(frame.loc[frame[names.VAL_MIOU].idxmax(), names.EPOCH]) == BUDGET
    registered = {stored(c.path)["epoch"] for c, _ in result.best_checkpoints}
    assert BUDGET not in registered
    [row] = budget_search.leaderboard
    assert Path(row.checkpoint).parent == Path(result.path)


@pytest.mark.slow
def test_the_study_holds_no_running_trial_once_the_budget_ended_the_search(budget_search):
    """Ray stops a budget-ended trial without telling the searcher; the study (what optuna-dashboard shows) is told
    it as Ray has it: stopped before max_epochs, so pruned at its last epoch's val mIoU."""
    import optuna
    from optuna.trial import TrialState
    url = f"sqlite:///{budget_search.paths.segtune / 'study.db'}"
    [trial] = optuna.load_study(study_name="budget", storage=url).get_trials()
    [result] = budget_search.results
    last = result.metrics_dataframe.iloc[-1]
    assert trial.state == TrialState.PRUNED
    assert trial.value == pytest.approx(last[names.VAL_MIOU], rel=1e-9)
    assert trial.user_attrs["ray_trial_id"] == result.metrics["trial_id"]
    assert max(trial.intermediate_values) == BUDGET


def fake_result(trial: Path, scores: list[float], registered: dict[int, float], filesystem=None, path=None):
    """A Ray Result as leaderboard_rows reads it: epochs 1.. scoring `scores`, checkpoint_00000{epoch-1} folders
    registered for the epochs in `registered` (epoch -> val mIoU), each folder holding a checkpoint.pt."""
    frame = pd.DataFrame({names.EPOCH: range(1, len(scores) + 1), names.VAL_MIOU: scores,
                          "checkpoint_dir_name": [f"checkpoint_{e:06d}" for e in range(len(scores))]})
    fs = filesystem or pafs.LocalFileSystem()
    root = path or str(trial)
    kept = [(SimpleNamespace(path=f"{root}/checkpoint_{e - 1:06d}", filesystem=fs),
             {names.EPOCH: e, names.VAL_MIOU: score}) for e, score in registered.items()]
    return SimpleNamespace(metrics_dataframe=frame, best_checkpoints=kept, path=root, filesystem=fs,
                           metrics={"trial_id": trial.name}, config={"lr": 0.01}, error=None,
                           get_best_checkpoint=lambda metric, mode: best_of(kept, metric))


def best_of(kept: list, metric: str):
    """Ray's Result.get_best_checkpoint (mode max): RuntimeError when the trial registered none."""
    if not kept:
        raise RuntimeError("No checkpoint exists in the trial directory!")
    return max(kept, key=lambda k: k[1][metric])[0]


def write_checkpoint(trial: Path, epoch: int, history: list[float]) -> None:
    folder = trial / f"checkpoint_{epoch - 1:06d}"
    folder.mkdir(parents=True)
    torch.save({"epoch": epoch, "history": history, "model": {"w": torch.zeros(2)}}, folder / names.CHECKPOINT_FILE)


SCORES = [0.2, 0.5, 0.4, 0.7]
"""Four epochs; the best is the 4th (0.7), the best registered the 2nd (0.5)."""


def test_without_the_best_epochs_checkpoint_the_row_scores_the_registered_one(tmp_path):
    trial = tmp_path / "trial_a"
    for epoch in (2, 3):
        write_checkpoint(trial, epoch, SCORES[:epoch])
    [row] = leaderboard_rows([fake_result(trial, SCORES, {2: 0.5, 3: 0.4})], max_epochs=6)
    # epoch 4's checkpoint exists nowhere: the row pairs the registered best (epoch 2, 0.5) with its own score
    assert row.checkpoint == str(trial / "checkpoint_000001") and row.val_miou == 0.5
    assert row.epochs == 4 and row.outcome == "stopped_early"


def test_an_unregistered_checkpoint_of_the_best_epoch_is_found_in_the_trial_folder(tmp_path):
    trial = tmp_path / "trial_b"
    for epoch in (2, 3, 4):
        write_checkpoint(trial, epoch, SCORES[:epoch])
    (trial / "checkpoint_000009").mkdir()  # a folder whose upload never finished: no checkpoint.pt
    [row] = leaderboard_rows([fake_result(trial, SCORES, {2: 0.5, 3: 0.4})], max_epochs=6)
    assert row.checkpoint == str(trial / "checkpoint_000003") and row.val_miou == 0.7


def test_a_checkpoint_of_another_epoch_under_the_best_epochs_folder_name_is_not_taken(tmp_path):
    """The folder progress.csv names for the best epoch holds epoch 3 (a trial restored and retrained): refused."""
    trial = tmp_path / "trial_c"
    write_checkpoint(trial, 2, SCORES[:2])
    write_checkpoint(trial, 3, SCORES[:3])
    (trial / "checkpoint_000002").rename(trial / "checkpoint_000003")
    [row] = leaderboard_rows([fake_result(trial, SCORES, {2: 0.5})], max_epochs=6)
    assert row.checkpoint == str(trial / "checkpoint_000001") and row.val_miou == 0.5


def test_a_trial_folder_in_a_remote_filesystem_is_read_through_it(tmp_path):
    """A non-local pyarrow filesystem (as a bucket is): its checkpoint is read through it, named by its URI."""
    trial = tmp_path / "bucket" / "exp" / "trial_d"
    for epoch in (2, 4):
        write_checkpoint(trial, epoch, SCORES[:epoch])
    remote = pafs.SubTreeFileSystem(str(tmp_path / "bucket"), pafs.LocalFileSystem())
    result = fake_result(trial, SCORES, {2: 0.5}, filesystem=remote, path="exp/trial_d")
    [row] = leaderboard_rows([result], max_epochs=6)
    assert (row.val_miou, row.checkpoint) == (0.7, "subtree://exp/trial_d/checkpoint_000003")


def test_a_trial_whose_best_epoch_was_registered_is_read_from_ray_alone(tmp_path):
    trial = tmp_path / "trial_e"  # no folder on disk at all: nothing is read
    [row] = leaderboard_rows([fake_result(trial, SCORES, {4: 0.7, 2: 0.5})], max_epochs=6)
    assert (row.val_miou, row.checkpoint) == (0.7, str(trial / "checkpoint_000003"))


def test_a_trial_without_any_checkpoint_keeps_its_best_score(tmp_path):
    [row] = leaderboard_rows([fake_result(tmp_path / "trial_f", SCORES, {})], max_epochs=6)
    assert row.val_miou == 0.7 and row.checkpoint is None
