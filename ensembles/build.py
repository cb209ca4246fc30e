"""One ensemble build: members' probabilities -> cross-validated choice -> test table -> bundle -> MLflow.

build_ensemble fits the candidates on validation maps; ensembles/refit.py gives finish_ensemble out-of-fold maps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ensembles.bootstrap import LEVEL, RESAMPLES, bootstrap_intervals
from ensembles.combine import (PER_FOLD, EnsembleModule, FoldAverage, PerFold, WeightedMean, at_scale, build_combiner,
                               fold_form, reading_as_trained)
from ensembles.fit import LIBRARY, FitSettings, Fitted
from ensembles.members import Member
from ensembles.probabilities import ProbabilityStore, import_val_probabilities, write_probabilities
from ensembles.protocol import BASELINE, evaluate_candidates, image_matrices
from ensembles.report import (REFERENCE, chosen_summary, format_table, plot_class_iou, plot_test_predictions,
                              reference_line, write_table)
from search.config import SearchConfig
from segtune.data import SegmentationData
from segtune.metrics import iou_per_class, mean_iou
from segtune.paths import EnsemblePaths, ExperimentPaths
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


@dataclass
class FitInputs:
    """What the candidates are fitted, cross-validated and tested on, and how each member is rebuilt for export."""
    store: ProbabilityStore
    """Every member's maps on the fitting images (test maps are added by write_test)."""
    pools: dict[str, list[str]]
    """Candidate pool -> the trial ids it may use: "top", and LIBRARY with --select library."""
    everyone: dict[str, Member]
    """Every member by trial id."""
    fit_ids: list[str]
    """The images candidates are fitted and cross-validated on."""
    checkpoints: dict[str, list[Path]]
    """Member -> the checkpoint(s) whose networks' probabilities it averages: its own, or a config's fold models."""
    write_test: Callable[[list[str]], None]
    """Writes the test maps of the members given; called once the candidates are fitted."""
    fit: dict
    """What report.json says of the fit: "on" (validation | out-of-fold), "images", and a refit's settings."""
    notes: dict[str, dict] = field(default_factory=dict)
    """Member -> what its report and manifest entries add (a refit's fold trials and epochs)."""
    reference: Member | None = None
    """The search's best trial, scored on test as it was trained, beside the candidates (the REFERENCE row of a
    refit's report); never chosen or exported. None: no such row."""
    test_folds: list[ProbabilityStore] = field(default_factory=list)
    """Members made of fold models (a refit exporting them): one store a fold with each member's fold model's test
    maps (written by write_test beside the averages), on which a stacker is scored fold by fold, as the bundle
    applies it (combine.PerFold). Empty: each member is one network."""


def build_ensemble(paths: ExperimentPaths, cfg: SearchConfig, data: SegmentationData, splits: dict, members: list[Member],
                   candidates: tuple[str, ...], folds: int, seed: int, overlap: float, tracker: Tracker | None,
                   register_name: str | None, library: list[Member] | None = None,
                   resamples: int = RESAMPLES) -> EnsembleResult:
    """members: the top k; library: every trial that kept its validation maps (for the library candidate).
    Candidates are fitted on the validation images (ensembles/refit.py fits them out-of-fold on train+val)."""
    folder = paths.ensemble
    print(f"members ({len(members)}): " + ", ".join(f"{m.trial_id} (val mIoU {m.val_miou:.4f})" for m in members))
    val_ids, test_ids = splits["val"], splits.get("test", [])
    index = data.index_of()
    shapes = {i: data.masks[index[i]].shape for i in val_ids}
    store, pools, everyone = _validation_maps(members, library, data, shapes, val_ids, folder.probabilities)
    inputs = FitInputs(store, pools, everyone, val_ids, {t: [m.checkpoint] for t, m in everyone.items()},
                       lambda ids: write_probabilities([everyone[t] for t in ids], data, test_ids, folder.probabilities),
                       {"on": "validation", "images": len(val_ids)})
    return finish_ensemble(folder, paths, cfg, data, test_ids, inputs, candidates, folds, seed, overlap, tracker,
                           register_name, resamples)


def finish_ensemble(folder: EnsemblePaths, paths: ExperimentPaths, cfg: SearchConfig, data: SegmentationData,
                    test_ids: list[str], inputs: FitInputs, candidates: tuple[str, ...], folds: int, seed: int,
                    overlap: float, tracker: Tracker | None, register_name: str | None,
                    resamples: int = RESAMPLES) -> EnsembleResult:
    """Cross-validated choice over inputs.fit_ids -> test scored once with intervals -> report -> bundle -> MLflow,
    all written to `folder`."""
    from ensembles.bundle import export_bundle
    if not test_ids:
        print("warning: the search kept no test split; the test column stays empty")
    index = data.index_of()
    masks = {i: data.masks[index[i]] for i in inputs.fit_ids + test_ids}
    exclude = tuple(data.classes.index(c) for c in cfg.exclude_from_mean)
    settings = FitSettings(data.num_classes, exclude, seed)
    print(f"cross-validating {len(candidates)} candidates over {len(inputs.fit_ids)} {_fitted_on(inputs.fit)}")
    started = time.perf_counter()
    pools = inputs.pools
    evaluation = evaluate_candidates(inputs.store, masks, inputs.fit_ids, test_ids, settings, folds, candidates,
                                     {c: pools.get(c, pools["top"]) for c in candidates}, before_test=inputs.write_test,
                                     test_folds=inputs.test_folds)
    print(f"cross-validation, refit and test scoring: {time.perf_counter() - started:.0f} s")
    matrices = {**evaluation.test_matrices, **_reference_matrices(inputs.reference, data, test_ids, masks, folder)}
    intervals = bootstrap_intervals(matrices, BASELINE if BASELINE in candidates else None, exclude, resamples, seed,
                                    LEVEL)
    rows = [{"candidate": row["candidate"], "chosen": row["chosen"], "fit": inputs.fit["on"],
             "fit_images": inputs.fit["images"], **row}
            for row in evaluation.table(exclude, list(data.classes), intervals)]
    line = ""
    if REFERENCE in matrices:
        rows.append(reference_row(inputs.reference.trial_id, matrices, evaluation.chosen, rows[0], exclude,
                                  list(data.classes), resamples, seed))
        line = reference_line(rows, paths.uri or str(paths.root))
    print(format_table(rows) + (f"\n{line}" if line else "") + "\n" + chosen_summary(rows)
          + f"\nfitted and cross-validated on {inputs.fit['images']} {_fitted_on(inputs.fit)}"
          + _fold_form_line(evaluation.fitted, len(inputs.test_folds)))

    draws = next(iter(intervals.values())).draws  # shared by every candidate
    summary = _summary(paths, cfg, evaluation, inputs, resamples, seed, len(test_ids))
    if line:
        summary["reference"] = _reference_summary(inputs.reference, folder, line)
    summary["bootstrap"].update(draws.reported())  # the draws discarded for missing a scored class, if any
    checkpoints = {m["trial_id"]: _checkpoint_text(inputs.checkpoints[m["trial_id"]]) for m in summary["members"]}
    files = write_table(rows, folder, {**summary, "checkpoints": checkpoints})
    plots = [plot_class_iou(rows, list(data.classes), folder.plot("class_iou"))]
    if test_ids:
        plots.append(plot_test_predictions(evaluation.fitted, inputs.store, data, test_ids[:3],
                                           folder.plot("test_predictions"), inputs.test_folds))

    chosen = evaluation.fitted[evaluation.chosen]
    groups = [[load_model(c) for c in inputs.checkpoints[t]] for t in chosen.trial_ids]
    trial_cfg = groups[0][0][1]
    form = None if summary["fold_form"] is None else summary["fold_form"][evaluation.chosen]
    module = ensemble_module(groups, chosen.combiner, trial_cfg.mean, trial_cfg.std, form)
    manifest = bundle_manifest(cfg, data, trial_cfg, summary, next(r for r in rows if r["chosen"]), overlap,
                               [group[0][1] for group in groups], form)
    torch.save(chosen.combiner.state_dict(), folder.combiner)  # tensors only; rebuilds the eager ensemble
    started = time.perf_counter()
    bundle = export_bundle(module, manifest, folder.bundle)
    print(f"bundle exported (TorchScript, ONNX, both checked against the eager ensemble): "
          f"{time.perf_counter() - started:.0f} s")
    run_id = _log_to_mlflow(paths, tracker, rows, summary, files + plots, bundle, register_name)
    return EnsembleResult(rows, evaluation.chosen, bundle, run_id)


def _reference_matrices(reference: Member | None, data: SegmentationData, test_ids: list[str], masks: dict,
                        folder: EnsemblePaths) -> dict[str, np.ndarray]:
    """{REFERENCE: (N, K, K) per-test-image confusion matrices} of the reference's own checkpoint, its test maps
    written as a validation fit writes its members' (write_probabilities) to folder/search_best/; {} without a
    reference or a test split."""
    if reference is None or not test_ids:
        return {}
    store = write_probabilities([reference], data, test_ids, folder.root / REFERENCE)
    alone = Fitted([reference.trial_id], WeightedMean([1.0]), [1.0])
    return {REFERENCE: image_matrices(alone, store, masks, test_ids, data.num_classes)}


def reference_row(trial_id: str, matrices: dict[str, np.ndarray], chosen: str, like: dict, exclude: tuple[int, ...],
                  class_names: list[str], resamples: int, seed: int) -> dict:
    """The REFERENCE row, with exactly `like`'s columns: its test mIoU and 95 % interval and, as its gain, the
    chosen candidate's test mIoU minus its own, drawn on the table's resamples (the same matrices, resamples and
    seed: the same draws); fit "search", and None for its cv scores and fit images (it was never fitted on the
    candidates' images)."""
    intervals = bootstrap_intervals(matrices, REFERENCE, exclude, resamples, seed, LEVEL)
    miou, gain, test = intervals[REFERENCE].miou, intervals[chosen].gain, matrices[REFERENCE].sum(0)
    values = {"candidate": REFERENCE, "chosen": False, "fit": "search", "members": trial_id,
              "test_miou": mean_iou(test, exclude), "test_miou_low": miou.low, "test_miou_high": miou.high,
              "gain": gain.value, "gain_low": gain.low, "gain_high": gain.high, "gain_verdict": gain.verdict(),
              "interval_note": intervals[REFERENCE].draws.note(),
              **{f"test_iou_{c}": float(v) for c, v in zip(class_names, iou_per_class(test))}}
    return {key: values.get(key) for key in like}


def _reference_summary(reference: Member, folder: EnsemblePaths, line: str) -> dict:
    """What report.json says of the reference row besides the table: its trial, checkpoint and maps, the line."""
    return {"candidate": REFERENCE, "trial_id": reference.trial_id, "val_miou": reference.val_miou,
            "checkpoint": str(reference.checkpoint), "probabilities": str(folder.root / REFERENCE),
            "gain": f"the chosen candidate's test mIoU minus {REFERENCE}'s, on the same resamples", "line": line}


def _reference_params(summary: dict, rows: list[dict]) -> dict:
    """The ensemble run's parameters on the reference row (its metrics come with every row's): none without one."""
    if "reference" not in summary:
        return {}
    row = next(r for r in rows if r["candidate"] == REFERENCE)
    return {f"{REFERENCE}_trial": row["members"], f"{REFERENCE}_gain_verdict": row["gain_verdict"]}


def _fitted_on(fit: dict) -> str:
    return "out-of-fold train+val images" if fit["on"] == "out-of-fold" else "validation images"


def _checkpoint_text(checkpoints: list[Path]):
    """One member's checkpoint(s) in report.json: a path, or a list of paths for a config's fold models."""
    return str(checkpoints[0]) if len(checkpoints) == 1 else [str(c) for c in checkpoints]


def ensemble_module(groups: list[list[tuple[torch.nn.Module, TrialConfig]]], combiner: torch.nn.Module, mean, std,
                    form: str | None) -> EnsembleModule:
    """The ensemble to export, in eval mode: its members from their networks (averaged_members) and the combiner as
    `form` says it meets members made of fold models (combine.fold_form: PER_FOLD wraps it in PerFold; None: each
    member is one network)."""
    members = averaged_members(groups, mean, std)
    return EnsembleModule(members, PerFold(combiner) if form == PER_FOLD else combiner, mean, std).eval()


def _fold_form_line(fitted: dict, folds: int) -> str:
    """The console line on how test met members made of fold models; empty when each member is one network."""
    if not folds:
        return ""
    stackers = [name for name, f in fitted.items() if fold_form(f.combiner) == PER_FOLD]
    return (f"\ntest and bundle: {', '.join(stackers) or 'no candidate'} applied to each of the {folds} folds' models "
            "and averaged (fitted on one fold model's maps an image); the weighted means on each config's fold "
            "average (the same)")


def averaged_members(groups: list[list[tuple[torch.nn.Module, TrialConfig]]], mean, std) -> list[torch.nn.Module]:
    """Each member from its networks (one, or a config's fold models, whose probabilities FoldAverage averages),
    reading the ensemble's input as member_modules says."""
    members = [member_modules(group, mean, std) for group in groups]
    return [networks[0] if len(networks) == 1 else FoldAverage(networks) for networks in members]


def member_modules(models: list[tuple[torch.nn.Module, TrialConfig]], mean, std) -> list[torch.nn.Module]:
    """Each member reading the ensemble's input (normalised with mean/std, at the size the search read images at) as
    its training read images: with its own normalisation (Renormalised) and at its own scale (Rescaled)."""
    return [at_scale(reading_as_trained(model, c.mean, c.std, mean, std), c.scale) for model, c in models]


def bundle_tile(crop, member_cfgs: list[TrialConfig] | None) -> list[int]:
    """The bundle's tile, at the size the search read images at: the crop over the largest member scale, so that
    member sees tiles of its own training crop (at scale 1: the crop), rounded up to 32."""
    scale = 1.0 if not member_cfgs else max(c.scale for c in member_cfgs)
    return [int(side) for side in network_tile([side / scale for side in crop])]


def _validation_maps(members: list[Member], library: list[Member] | None, data: SegmentationData, shapes: dict,
                     val_ids: list[str], folder: Path):
    """The store of every member's validation maps (kept by the trial where it did, else computed), each candidate
    pool's trial ids ("top", and LIBRARY with --select library) and every member by trial id."""
    everyone = {m.trial_id: m for m in members + (library or [])}
    started = time.perf_counter()
    kept = import_val_probabilities(list(everyone.values()), shapes, folder)
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


def _summary(paths: ExperimentPaths, cfg: SearchConfig, evaluation, inputs: FitInputs, resamples: int, seed: int,
             test_images: int) -> dict:
    """What report.json says besides the table: every member a candidate used ("members"), the chosen one's
    members with their weights ("ensemble"), the library selected from, how the candidates were fitted ("fit") and
    how the intervals were drawn."""
    chosen, pools = evaluation.fitted[evaluation.chosen], inputs.pools
    used = dict.fromkeys(pools["top"] + [t for f in evaluation.fitted.values() for t in f.trial_ids])

    def described(trial_id: str) -> dict:
        return {**_described(inputs.everyone[trial_id]), **inputs.notes.get(trial_id, {})}
    summary = {"experiment": paths.tune_path, "select": LIBRARY if LIBRARY in pools else "top-k",
               "chosen": evaluation.chosen, "fit": inputs.fit, "folds": evaluation.folds,
               # how each candidate met members made of fold models on test and would in the bundle; null: one network
               "fold_form": {name: fold_form(f.combiner) for name, f in evaluation.fitted.items()}
               if inputs.test_folds else None,
               "members": [described(t) for t in used],
               "ensemble": [{**described(t), "weight": w} for t, w in
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
                    overlap: float, member_cfgs: list[TrialConfig] | None = None, fold_form: str | None = None) -> dict:
    """What the bundle needs to predict as the members were trained: classes, normalisation, tile and the
    scale the search read images at (its resize, or null for each image's own size; members at a `scale` below 1
    shrink that input themselves); its members with their weights (greedy and library selection: times picked),
    the encoder weights each started from and the scale each works at, its combiner's kind and fold_form (how it
    meets members made of fold models, combine.fold_form; null: one network a member), and its scores with their
    95 % intervals."""
    members = summary["ensemble"] if member_cfgs is None else [
        {**member, "started_from": started_from(c), "scale": c.scale} for member, c in zip(summary["ensemble"],
                                                                                          member_cfgs)]
    return {"classes": list(data.classes), "palette": [list(c) for c in data.palette],
            "in_channels": data.in_channels, "mean": trial_cfg.mean, "std": trial_cfg.std,
            "tile": bundle_tile(cfg.crop, member_cfgs), "overlap": overlap,
            "input_scale": None if cfg.resize is None else {"resize": [int(side) for side in cfg.resize]},
            "members": members, "combiner": {"kind": summary["chosen"], "fold_form": fold_form},
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
                                                  **{f"bootstrap_{key}": value for key, value in
                                                     summary["bootstrap"].items() if key in ("discarded", "valid")},
                                                  "chosen_gain_verdict": next(r for r in rows if r["chosen"])["gain_verdict"],
                                                  **_reference_params(summary, rows),
                                                  **{"fit" if key == "on" else f"fit_{key}": value
                                                     for key, value in summary["fit"].items()}})
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


def eager_ensemble(paths: ExperimentPaths, folder: EnsemblePaths | None = None) -> EnsembleModule:
    """The chosen ensemble of a built experiment as a PyTorch module, from the members' checkpoints (a refitted
    member's: its fold models); `folder`: the ensemble's folder (default the experiment's; a refit writes its own)."""
    from ensembles.bundle import MANIFEST
    folder = folder or paths.ensemble
    report = json.loads(folder.report.read_text())
    manifest = json.loads((folder.bundle / MANIFEST).read_text())
    files = [report["checkpoints"][m["trial_id"]] for m in manifest["members"]]
    groups = [[load_model(file) for file in ([f] if isinstance(f, str) else f)] for f in files]
    combiner = build_combiner(KIND_OF[report["chosen"]], len(groups), len(manifest["classes"]))
    combiner.load_state_dict(torch.load(folder.combiner, map_location="cpu", weights_only=True))
    # a bundle exported before fold_form was recorded applied every combiner to the fold averages
    form = manifest["combiner"].get("fold_form")
    return ensemble_module(groups, combiner.eval(), manifest["mean"], manifest["std"], form)
