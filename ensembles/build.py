"""One ensemble build: members' probabilities -> cross-validated choice -> test table -> bundle -> MLflow."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ensembles.combine import EnsembleModule, build_combiner
from ensembles.fit import FitSettings
from ensembles.members import Member
from ensembles.probabilities import write_probabilities
from ensembles.protocol import evaluate_candidates
from ensembles.report import format_table, plot_class_iou, plot_test_predictions, write_table
from search.config import SearchConfig
from segtune.data import SegmentationData
from segtune.paths import ExperimentPaths
from segtune.tiling import network_tile
from segtune.tracking import Tracker, store_uri
from trainables import load_model
from trainables.config import TrialConfig


KIND_OF = {"best_single": "weighted_mean", "mean": "weighted_mean", "greedy": "weighted_mean",
           "pixel_logistic": "pixel_logistic", "context_head": "context_head"}


@dataclass
class EnsembleResult:
    rows: list[dict]
    chosen: str
    bundle: Path
    run_id: str | None


def build_ensemble(paths: ExperimentPaths, cfg: SearchConfig, data: SegmentationData, splits: dict, members: list[Member],
                   candidates: tuple[str, ...], folds: int, seed: int, overlap: float, tracker: Tracker | None,
                   register_name: str | None) -> EnsembleResult:
    from ensembles.bundle import export_bundle
    folder = paths.ensemble
    print(f"members ({len(members)}): " + ", ".join(f"{m.trial_id} (val mIoU {m.val_miou:.4f})" for m in members))
    val_ids, test_ids = splits["val"], splits.get("test", [])
    if not test_ids:
        print("warning: the search kept no test split; the test column stays empty")
    started = time.perf_counter()
    store = write_probabilities(members, data, val_ids + test_ids, folder.probabilities)
    print(f"probabilities of {len(members)} members on {len(val_ids + test_ids)} images: "
          f"{time.perf_counter() - started:.0f} s")
    index = data.index_of()
    masks = {i: data.masks[index[i]] for i in val_ids + test_ids}
    exclude = tuple(data.classes.index(c) for c in cfg.exclude_from_mean)
    settings = FitSettings(data.num_classes, exclude, seed)
    print(f"cross-validating {len(candidates)} candidates over {len(val_ids)} validation images")
    started = time.perf_counter()
    evaluation = evaluate_candidates(store, masks, val_ids, test_ids, settings, folds, candidates)
    print(f"cross-validation, refit and test scoring: {time.perf_counter() - started:.0f} s")
    rows = evaluation.table(exclude, list(data.classes))
    print(format_table(rows))

    summary = {"experiment": paths.tune_path, "chosen": evaluation.chosen, "folds": evaluation.folds,
               "members": [{"trial_id": m.trial_id, "val_miou": m.val_miou, "config": m.params} for m in members],
               "excluded_from_mean": list(cfg.exclude_from_mean), "test_images": len(test_ids)}
    files = write_table(rows, folder, {**summary, "checkpoints": {m.trial_id: str(m.checkpoint) for m in members}})
    plots = [plot_class_iou(rows, list(data.classes), folder.plot("class_iou"))]
    if test_ids:
        plots.append(plot_test_predictions(evaluation.combiners, store, data, test_ids[:3],
                                           folder.plot("test_predictions")))

    models = [load_model(m.checkpoint) for m in members]
    trial_cfg = models[0][1]
    module = EnsembleModule([model for model, _ in models], evaluation.combiners[evaluation.chosen],
                            trial_cfg.mean, trial_cfg.std).eval()
    manifest = bundle_manifest(cfg, data, trial_cfg, summary, next(r for r in rows if r["chosen"]), overlap)
    torch.save(module.combiner.state_dict(), folder.combiner)  # tensors only; rebuilds the eager ensemble
    started = time.perf_counter()
    bundle = export_bundle(module, manifest, folder.bundle)
    print(f"bundle exported (TorchScript, ONNX, both checked against the eager ensemble): "
          f"{time.perf_counter() - started:.0f} s")
    run_id = _log_to_mlflow(paths, tracker, rows, summary, files + plots, bundle, register_name)
    return EnsembleResult(rows, evaluation.chosen, bundle, run_id)


def bundle_manifest(cfg: SearchConfig, data: SegmentationData, trial_cfg: TrialConfig, summary: dict, chosen_row: dict,
                    overlap: float) -> dict:
    """What the bundle needs to predict as the members were trained: classes, normalisation, tile and the
    scale the search read images at (its resize, or null for each image's own size)."""
    return {"classes": list(data.classes), "palette": [list(c) for c in data.palette],
            "in_channels": data.in_channels, "mean": trial_cfg.mean, "std": trial_cfg.std,
            "tile": network_tile(cfg.crop), "overlap": overlap,
            "input_scale": None if cfg.resize is None else {"resize": [int(side) for side in cfg.resize]},
            "members": summary["members"], "combiner": {"kind": summary["chosen"]},
            "scores": {"cv_miou": chosen_row["cv_miou"], "test_miou": chosen_row["test_miou"],
                       "excluded_from_mean": list(cfg.exclude_from_mean)}}


def _log_to_mlflow(paths, tracker, rows, summary, files, bundle, register_name) -> str | None:
    """An "ensemble" child run of the search's parent run; the bundle as a (registered) MLflow model."""
    if tracker is None or not paths.parent_run.exists():
        return None
    tracker.parent_id = paths.parent_run.read_text().strip()
    run_id = tracker.start_stage_run("ensemble", {"chosen": summary["chosen"], "members": len(summary["members"]),
                                                  "member_trials": ",".join(m["trial_id"] for m in summary["members"])})
    if run_id is None:  # the store is unreachable; the report and bundle are on disk
        print(f"MLflow at {tracker.tracking_uri} could not be reached: nothing logged; the report and bundle are "
              f"in {bundle.parent}")
        return None
    metrics = {}
    for row in rows:
        metrics.update({f"{row['candidate']}_{key}": value for key, value in row.items()
                        if isinstance(value, float)})
    tracker.log_metrics(run_id, metrics)
    for file in files:
        tracker.log_artifact(str(file), "plots" if file.suffix == ".png" else None, run_id=run_id)
    try:
        from ensembles.mlflow_model import log_bundle_model
        uri = log_bundle_model(bundle, store_uri(tracker.tracking_uri), run_id, register_name)  # a password unmasked
        print(f"MLflow model: {uri}" + (f" (registered as {register_name})" if register_name else ""))
    except Exception as error:  # noqa: BLE001 - the bundle on disk is the product; MLflow is a copy
        print(f"warning: logging the MLflow model failed ({error}); the bundle is at {bundle}")
    tracker.finish_run(run_id)
    return run_id


def eager_ensemble(paths: ExperimentPaths) -> EnsembleModule:
    """The chosen ensemble of a built experiment as a PyTorch module, from the members' checkpoints."""
    from ensembles.bundle import MANIFEST
    folder = paths.ensemble
    report = json.loads(folder.report.read_text())
    manifest = json.loads((folder.bundle / MANIFEST).read_text())
    models = [load_model(report["checkpoints"][m["trial_id"]])[0] for m in report["members"]]
    combiner = build_combiner(KIND_OF[report["chosen"]], len(models), len(manifest["classes"]))
    combiner.load_state_dict(torch.load(folder.combiner, map_location="cpu", weights_only=True))
    return EnsembleModule(models, combiner.eval(), manifest["mean"], manifest["std"]).eval()
