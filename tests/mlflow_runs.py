"""What a search left in an MLflow store, read back for the tests that log live or replay later."""

from mlflow.tracking import MlflowClient

from segtune import names

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused at once


def logged_runs(uri: str):
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("segtune").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if names.TAG_TRIAL_ID in r.data.tags]
    return client, runs, parents, children


def assert_logged_like(uri: str, leaderboard: list):
    """One parent and a closed child per trial, each with the leaderboard's outcome and a val mIoU per epoch."""
    client, runs, parents, children = logged_runs(uri)
    assert len(parents) == 1 and len(children) == len(leaderboard)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    by_trial = {r.data.tags[names.TAG_TRIAL_ID]: r for r in children}
    for row in leaderboard:
        run = by_trial[row.trial_id]
        assert run.data.tags[names.TAG_OUTCOME] == row.outcome
        history = client.get_metric_history(run.info.run_id, names.VAL_MIOU)
        assert [m.step for m in history] == list(range(1, row.epochs + 1))
    return client, parents, by_trial
