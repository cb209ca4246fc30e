"""Log an exported bundle to MLflow as a pyfunc model and register it.

    uri = log_bundle_model("bundle/", "sqlite:///mlflow.db", run_id, "crop-weed-ensemble")
    model = mlflow.pyfunc.load_model(uri)
    out = model.predict(images)   # (N, H, W, C) uint8 -> {"classes": (N, H, W) int32, "probabilities": (N, K, H, W)}

The model is logged "from code": MLflow stores mlflow_model_code.py, which builds a BundleModel,
instead of a cloudpickled object, and the bundle folder as an artifact. Loading it runs no pickled
Python but needs segtune installed where it is loaded or served (its requirements name segtune).
"""

from __future__ import annotations

import importlib.metadata
import warnings
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import Model, ModelSignature
from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

from ensembles.bundle import load_bundle
from ensembles.predict import predict_image

CODE_FILE = Path(__file__).with_name("mlflow_model_code.py")
"""The file MLflow stores and runs to rebuild the model."""
REQUIREMENTS = ("segtune", "torch", "numpy", "onnxruntime", "pillow", "tqdm")
"""Distributions the model's environment needs, pinned to the versions installed when it is logged."""
BATCH_SIZE = 4
"""Tiles per forward pass unless the caller passes params={"batch_size": n}."""


class BundleModel(mlflow.pyfunc.PythonModel):
    """An exported bundle (TorchScript runtime, GPU when there is one) behind MLflow's pyfunc interface."""

    def load_context(self, context):
        self.bundle = load_bundle(context.artifacts["bundle"], runtime="torchscript", device="auto")

    def predict(self, context, model_input: np.ndarray, params: dict | None = None) -> dict[str, np.ndarray]:
        """(N, H, W, C) uint8 images, or one (H, W, C) image -> class indices and probabilities per image."""
        images = np.asarray(model_input)
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError(f"the model takes uint8 images (N, H, W, C) or (H, W, C), got {images.dtype} "
                             f"{images.shape}; convert images with np.asarray(PIL.Image.open(path))")
        batch_size = params["batch_size"] if params else BATCH_SIZE  # a loaded pyfunc fills it from the signature
        batch = images.reshape(-1, *images.shape[-3:])
        probs = np.stack([predict_image(self.bundle, image, batch_size) for image in batch])
        result = {"classes": probs.argmax(1).astype(np.int32), "probabilities": probs}
        return result if images.ndim == 4 else {key: value[0] for key, value in result.items()}


def bundle_signature(manifest: dict) -> ModelSignature:
    """Batches of uint8 images of any size in; one int32 class map and K float32 probability maps per image out.

    MLflow checks the input's rank against the signature, so through a loaded pyfunc model a
    single image is passed as a batch of one (image[None]).
    """
    channels, classes = manifest["in_channels"], len(manifest["classes"])
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, channels))]),
        outputs=Schema([TensorSpec(np.dtype(np.int32), (-1, -1, -1), "classes"),
                        TensorSpec(np.dtype(np.float32), (-1, classes, -1, -1), "probabilities")]),
        params=ParamSchema([ParamSpec("batch_size", "long", BATCH_SIZE)]))


def log_bundle_model(bundle_folder, tracking_uri: str, run_id: str, registered_name: str | None) -> str:
    """Log the bundle as model "ensemble" of run `run_id`; return models:/<name>/<version> when it is registered
    under registered_name, else (registered_name None) the logged model's models:/<model id>.

    The run keeps its status (Model.log with run_id neither starts nor ends it). MLflow's model
    logging reads the process-wide tracking URI, so it is set for the call and restored after.
    """
    manifest = load_bundle(bundle_folder).manifest  # a broken bundle fails here, not when the model is served
    requirements = [f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS]
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with warnings.catch_warnings():
            # the signature describes the input; an example image would only add a large JSON file to the model
            warnings.filterwarnings("ignore", ".*An input example was not provided", UserWarning)
            info = Model.log(artifact_path=None, name="ensemble", flavor=mlflow.pyfunc, run_id=run_id,
                             python_model=str(CODE_FILE), artifacts={"bundle": str(Path(bundle_folder))},
                             signature=bundle_signature(manifest), registered_model_name=registered_name,
                             pip_requirements=requirements)
    finally:
        mlflow.set_tracking_uri(previous)
    return f"models:/{registered_name}/{info.registered_model_version}" if registered_name else info.model_uri
