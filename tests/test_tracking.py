"""The MLflow tracker: parameter names MLflow refuses are mapped, stage runs nest under the parent."""

from mlflow.tracking import MlflowClient

from segtune import names
from segtune.tracking import PARENT_TAG, Tracker


def test_branch_parameters_are_logged_under_names_mlflow_accepts(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "t")
    parent = tracker.start_parent("search", {"space": "crop_weed"})
    child = tracker.child("trial_1", {"encoder@dilatable": "resnet18", "lr": 0.001})
    assert not tracker.failed
    params = MlflowClient(tracker.tracking_uri).get_run(child).data.params
    assert params == {"encoder:dilatable": "resnet18", "lr": "0.001"}
    assert MlflowClient(tracker.tracking_uri).get_run(child).data.tags[PARENT_TAG] == parent


def test_a_stage_run_is_a_tagged_child_of_the_parent_and_skips_non_finite_metrics(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "t")
    parent = tracker.start_parent("search", {})
    run_id = tracker.start_stage_run("ensemble", {"chosen": "mean"})
    tracker.log_metrics(run_id, {"mean_test_miou": 0.5, "mean_cv_iou_rare": float("nan")})
    tracker.finish_run(run_id)
    run = MlflowClient(tracker.tracking_uri).get_run(run_id)
    assert run.data.tags[PARENT_TAG] == parent and run.data.tags[names.TAG_KIND] == "ensemble"
    assert run.data.metrics == {"mean_test_miou": 0.5}
    assert run.info.status == "FINISHED" and not tracker.failed
