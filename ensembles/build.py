"""One ensemble build: members' probabilities -> cross-validated choice -> test table -> bundle -> MLflow."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ensembles.bootstrap import LEVEL, RESAMPLES, bootstrap_intervals
from ensembles.combine import EnsembleModule, at_scale, build_combiner, reading_as_trained
from ensembles.fit import LIBRARY, FitSettings
from ensembles.members import Member
from ensembles.probabilities import ProbabilityStore, import_val_probabilities, write_probabilities
from ensembles.protocol import BASELINE, evaluate_candidates
from ensembles.report import chosen_summary, format_table, plot_class_iou, plot_test_predictions, write_table
from search.config import SearchConfig
from segtune.data import SegmentationData
from segtune.paths import ExperimentPaths
from segtune.tiling import network_tile
from segtune.tracking import Tracker, store_uri
from trainables import load_model
from trainables.config import TrialConfig
from trainables.model import started_from


KIND_OF = {"best_single": "weighted_mean", "mean": "weighted_mean", "greedy": "weighted_mean",
           LIBRARY: "weighted_mean", "pixel_logistic": "pixel_logistic", "context_head": "context_head"}


SCORE_KEYS = ("cv_miou", "test_miou", "test_miou_low", "test_miou_high", "gain", "gain_low", "gain_high", "gain_verdict")
"""The chosen candidate's scores the manifest and the MLflow run carry (gain: over the best single model)."""


@dataclass
class EnsembleResult:
    rows: list[dict]
    chosen: str
    bundle: Path
    run_id: str | None


def build_ensemble(paths: ExperimentPaths, cfg: SearchConfig, data: SegmentationData, splits: dict, members: list[Member],
                   candidates: tuple[str, ...], folds: int, seed: int, overlap: float, tracker: Tracker | None,
                   register_name: str | None, library: list[Member] | None = None,
                   resamples: int = RESAMPLES) -> EnsembleResult:
    """members: the top k; library: every trial that kept its validation maps (for the library candidate)."""
    from ensembles.bundle import export_bundle
    folder = paths.ensemble
    print(f"members ({len(members)}): " + ", ".join(f"{m.trial_id} (val mIoU {m.val_miou:.4f})" for m in members))
    val_ids, test_ids = splits["val"], splits.get("test", [])
    if not test_ids:
        print("warning: the search kept no test split; the test column stays empty")
    index = data.index_of()
    masks = {i: data.masks[index[i]] for i in val_ids + test_ids}
    store, pools, everyone = _validation_maps(members, library, data, masks, val_ids, folder.probabilities)
    exclude = tuple(data.classes.index(c) for c in cfg.exclude_from_mean)
    settings = FitSettings(data.num_classes, exclude, seed)
    print(f"cross-validating {len(candidates)} candidates over {len(val_ids)} validation images")
    started = time.perf_counter()
    evaluation = evaluate_candidates(
        store, masks, val_ids, test_ids, settings, folds, candidates, {c: pools.get(c, pools["top"]) for c in candidates},
        before_test=lambda ids: write_probabilities([everyone[t] for t in ids], data, test_ids, folder.probabilities))
    print(f"cross-validation, refit and test scoring: {time.perf_counter() - started:.0f} s")
    intervals = bootstrap_intervals(evaluation.test_matrices, BASELINE if BASELINE in candidates else None, exclude,
                                    resamples, seed, LEVEL)
    rows = evaluation.table(exclude, list(data.classes), intervals)
    print(format_table(rows) + "\n" + chosen_summary(rows))

    summary = _summary(paths, cfg, evaluation, pools, everyone, resamples, seed, len(test_ids))
    checkpoints = {m["trial_id"]: str(everyone[m["trial_id"]].checkpoint) for m in summary["members"]}
    files = write_table(rows, folder, {**summary, "checkpoints": checkpoints})
    plots = [plot_class_iou(rows, list(data.classes), folder.plot("class_iou"))]
    if test_ids:
        plots.append(plot_test_predictions(evaluation.fitted, store, data, test_ids[:3], folder.plot("test_predictions")))

    chosen = evaluation.fitted[evaluation.chosen]
    models = [load_model(everyone[t].checkpoint) for t in chosen.trial_ids]
    trial_cfg = models[0][1]
    module = EnsembleModule(member_modules(models, trial_cfg.mean, trial_cfg.std), chosen.combiner, trial_cfg.mean,
                            trial_cfg.std).eval()
    manifest = bundle_manifest(cfg, data, trial_cfg, summary, next(r for r in rows if r["chosen"]), overlap,
                               [c for _, c in models])
    torch.save(module.combiner.state_dict(), folder.combiner)  # tensors only; rebuilds the eager ensemble
    started = time.perf_counter()
    bundle = export_bundle(module, manifest, folder.bundle)
    print(f"bundle exported (TorchScript, ONNX, both checked against the eager ensemble): "
          f"{time.perf_counter() - started:.0f} s")
    run_id = _log_to_mlflow(paths, tracker, rows, summary, files + plots, bundle, register_name)
    return EnsembleResult(rows, evaluation.chosen, bundle, run_id)


def member_modules(models: list[tuple[torch.nn.Module, TrialConfig]], mean, std) -> list[torch.nn.Module]:
    """Each member reading the ensemble's input (normalised with mean/std, at the size the search read images at) as
    its training read images: with its own normalisation (Renormalised) and at its own scale (Rescaled)."""
    return [at_scale(reading_as_trained(model, c.mean, c.std, mean, std), c.scale) for model, c in models]


def bundle_tile(crop, member_cfgs: list[TrialConfig] | None) -> list[int]:
    """The bundle's tile, at the size the search read images at: the crop over the largest member scale, so that
    member sees tiles of its own training crop (at scale 1: the crop), rounded up to 32."""
    scale = 1.0 if not member_cfgs else max(c.scale for c in member_cfgs)
    return [int(side) for side in network_tile([side / scale for side in crop])]


def _validation_maps(members: list[Member], library: list[Member] | None, data: SegmentationData, masks: dict,
                     val_ids: list[str], folder: Path):
    """The store of every member's validation maps (kept by the trial where it did, else computed), each candidate
    pool's trial ids ("top", and LIBRARY with --select library) and every member by trial id."""
    everyone = {m.trial_id: m for m in members + (library or [])}
    started = time.perf_counter()
    kept = import_val_probabilities(list(everyone.values()), {i: masks[i].shape for i in val_ids}, folder)
    write_probabilities([m for m in members if m not in kept], data, val_ids, folder)
    print(f"validation maps of {len(everyone)} trials ({len(kept)} kept by their trials): "
          f"{time.perf_counter() - started:.0f} s")
    pools = {"top": [m.trial_id for m in members]}
    if library is not None:
        pools[LIBRARY] = [m.trial_id for m in library if m in kept]
        print(f"library: {len(pools[LIBRARY])} trials kept validation maps to select from")
        if not pools[LIBRARY]:
            raise ValueError("option --select library: no trial's kept validation maps match this experiment's images")
    return ProbabilityStore(folder, list(everyone)), pools, everyone


def _summary(paths: ExperimentPaths, cfg: SearchConfig, evaluation, pools: dict, everyone: dict, resamples: int,
             seed: int, test_images: int) -> dict:
    """What report.json says besides the table: every member a candidate used ("members"), the chosen one's
    members with their weights ("ensemble"), the library selected from, and how the intervals were drawn."""
    chosen = evaluation.fitted[evaluation.chosen]
    used = dict.fromkeys(pools["top"] + [t for f in evaluation.fitted.values() for t in f.trial_ids])
    summary = {"experiment": paths.tune_path, "select": LIBRARY if LIBRARY in pools else "top-k",
               "chosen": evaluation.chosen, "folds": evaluation.folds,
               "members": [_described(everyone[t]) for t in used],
               "ensemble": [{**_described(everyone[t]), "weight": w} for t, w in
                            zip(chosen.trial_ids, chosen.weights or [None] * len(chosen.trial_ids))],
               "bootstrap": {"resamples": resamples, "level": LEVEL, "seed": seed, "baseline": BASELINE,
                             "test_images": test_images},
               "excluded_from_mean": list(cfg.exclude_from_mean), "test_images": test_images}
    if LIBRARY in pools:
        summary["library"] = pools[LIBRARY]
    return summary


def _described(member: Member) -> dict:
    return {"trial_id": member.trial_id, "val_miou": member.val_miou, "config": member.params}


def bundle_manifest(cfg: SearchConfig, data: SegmentationData, trial_cfg: TrialConfig, summary: dict, chosen_row: dict,
                    overlap: float, member_cfgs: list[TrialConfig] | None = None) -> dict:
    """What the bundle needs to predict as the members were trained: classes, normalisation, tile and the
    scale the search read images at (its resize, or null for each image's own size; members at a `scale` below 1
    shrink that input themselves); its members with their weights (greedy and library selection: times picked),
    the encoder weights each started from and the scale each works at, and its scores with their 95 % intervals."""
    members = summary["ensemble"] if member_cfgs is None else [
        {**member, "started_from": started_from(c), "scale": c.scale} for member, c in zip(summary["ensemble"],
                                                                                          member_cfgs)]
    return {"classes": list(data.classes), "palette": [list(c) for c in data.palette],
            "in_channels": data.in_channels, "mean": trial_cfg.mean, "std": trial_cfg.std,
            "tile": bundle_tile(cfg.crop, member_cfgs), "overlap": overlap,
            "input_scale": None if cfg.resize is None else {"resize": [int(side) for side in cfg.resize]},
            "members": members, "combiner": {"kind": summary["chosen"]},
            "scores": {**{key: chosen_row[key] for key in SCORE_KEYS},
                       "excluded_from_mean": list(cfg.exclude_from_mean)}}


def _log_to_mlflow(paths, tracker, rows, summary, files, bundle, register_name) -> str | None:
    """An "ensemble" child run of the search's parent run; the bundle as a (registered) MLflow model."""
    if tracker is None or not paths.parent_run.exists():
        return None
    tracker.parent_id = paths.parent_run.read_text().strip()
    run_id = tracker.start_stage_run("ensemble", {"chosen": summary["chosen"], "select": summary["select"],
                                                  "members": len(summary["ensemble"]),
                                                  "member_trials": ",".join(m["trial_id"] for m in summary["ensemble"]),
                                                  "bootstrap_resamples": summary["bootstrap"]["resamples"],
                                                  "bootstrap_level": summary["bootstrap"]["level"],
                                                  "chosen_gain_verdict": next(r for r in rows if r["chosen"])["gain_verdict"]})
    if run_id is None:  # the store is unreachable; the report and bundle are on disk
        print(f"MLflow at {tracker.tracking_uri} could not be reached: nothing logged; the report and bundle are "
              f"in {bundle.parent}")
        return None
    metrics = {}
    for row in rows:
        metrics.update({f"{row['candidate']}_{key}": value for key, value in row.items()
                        if isinstance(value, float)})
        if row["chosen"]:
            metrics.update({f"chosen_{key}": row[key] for key in SCORE_KEYS if isinstance(row[key], float)})
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
    models = [load_model(report["checkpoints"][m["trial_id"]]) for m in manifest["members"]]
    combiner = build_combiner(KIND_OF[report["chosen"]], len(models), len(manifest["classes"]))
    combiner.load_state_dict(torch.load(folder.combiner, map_location="cpu", weights_only=True))
    members = member_modules(models, manifest["mean"], manifest["std"])
    return EnsembleModule(members, combiner.eval(), manifest["mean"], manifest["std"]).eval()
