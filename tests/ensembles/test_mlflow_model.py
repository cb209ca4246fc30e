"""The bundle as a registered MLflow model: logged from code (nothing pickled), loaded back, same classes."""

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from tiny_ensembles import edit_manifest, random_image

from ensembles.bundle import load_bundle
from ensembles.mlflow_model import BundleModel, log_bundle_model
from ensembles.predict import predict_image


@pytest.fixture
def tracking(tmp_path):
    """(tracking URI, run id) of a sqlite store in tmp_path; the process's tracking URI is restored afterwards."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("ensembles", artifact_location=(tmp_path / "artifacts").as_uri())
    previous = mlflow.get_tracking_uri()
    yield uri, client.create_run(experiment).info.run_id
    mlflow.set_tracking_uri(previous)


def test_registered_model_predicts_like_the_bundle(rgb_ensemble, tracking):
    uri, run_id = tracking
    model_uri = log_bundle_model(rgb_ensemble[1], uri, run_id, "tiny-ensemble")
    assert model_uri == "models:/tiny-ensemble/1"
    assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING", "logging must not end the caller's run"
    mlflow.set_tracking_uri(uri)
    assert not list(Path(mlflow.artifacts.download_artifacts(model_uri)).rglob("*.pkl")), "the model was pickled"
    model = mlflow.pyfunc.load_model(model_uri)
    images = np.stack([random_image(70, 100, 3, seed=seed) for seed in (6, 7)])
    out = model.predict(images, params={"batch_size": 2})
    bundle = load_bundle(rgb_ensemble[1])
    expected = np.stack([predict_image(bundle, image) for image in images])
    assert out["classes"].dtype == np.int32 and out["probabilities"].shape == (2, 3, 70, 100)
    np.testing.assert_array_equal(out["classes"], expected.argmax(1))
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    single = model.unwrap_python_model().predict(None, images[0])
    np.testing.assert_array_equal(single["classes"], expected[0].argmax(0))
    assert log_bundle_model(rgb_ensemble[1], uri, run_id, None).startswith("models:/m-"), "unregistered: the model id"


def test_model_reads_images_at_the_training_scale_and_answers_at_their_size(rgb_ensemble, tmp_path):
    folder = shutil.copytree(rgb_ensemble[1], tmp_path / "bundle")
    edit_manifest(folder, lambda m: m.update(input_scale={"resize": [64, 96]}))
    model = BundleModel()
    model.bundle = load_bundle(folder)  # what load_context does with the logged bundle
    images = np.stack([random_image(128, 192, 3, seed=seed) for seed in (6, 7)])
    out = model.predict(None, images)
    assert out["classes"].shape == (2, 128, 192) and out["probabilities"].shape == (2, 3, 128, 192)
    training_size = np.asarray(Image.fromarray(images[1]).resize((96, 64), Image.BILINEAR))  # as readers resize
    small = predict_image(load_bundle(rgb_ensemble[1]), training_size)
    upsampled = np.stack([np.asarray(Image.fromarray(p).resize((192, 128), Image.BILINEAR)) for p in small])
    np.testing.assert_allclose(out["probabilities"][1], upsampled, atol=1e-5)
    np.testing.assert_array_equal(out["classes"][1], upsampled.argmax(0))
