"""segtune: distributed hyperparameter search and ensembling for semantic segmentation.

Shared by every stage: data readers and splits (segtune.data), metrics, metric names, class weights,
output paths and the MLflow module (segtune.tracking). Nothing here imports a stage (spaces,
trainables, search, ensembles).
"""

__version__ = "0.1.0"
