"""The file MLflow runs to rebuild a logged bundle model ("models from code"): it imports only segtune."""

from mlflow.models import set_model

from ensembles.mlflow_model import BundleModel

set_model(BundleModel())
