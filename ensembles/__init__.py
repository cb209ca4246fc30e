"""Ensembles: stack a finished search's best trials, prove the gain on untouched images, export one bundle.

members (top k, or the library of every trial that kept its validation maps) -> probabilities (float16,
held-out images) -> fit/protocol (cross-validated choice among combine's candidates, test once) ->
bootstrap (95 % intervals over test images) -> report -> bundle (TorchScript + ONNX + manifest) -> predict;
build.py runs the chain for `segtune ensemble` (run.py); mlflow_model.py logs the bundle as a model; refit.py
runs it on out-of-fold maps of the best configs retrained on K folds of train+val (--refit-folds, search/refit.py).
"""

__all__: list[str] = []
