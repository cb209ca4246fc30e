import os

# Quiet, offline, reproducible: set before Ray, MLflow or albumentations are imported by any test.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from searches import finished_search, local_ray  # noqa: E402,F401  (session fixtures: one real search per run)
