"""segtune: distributed hyperparameter search and ensembling for semantic segmentation.

Shared by every stage: data readers and splits (segtune.data), metrics, metric names,
output paths and the MLflow module (segtune.tracking).
"""

__version__ = "0.1.0"
