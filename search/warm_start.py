"""Warm starts: seed a new search with the best configs of earlier searches, mapped into its own space.

    python search/run.py --config crop_weed.yaml --warm-start field-2023,field-2024   # named experiments
    python search/run.py --config crop_weed.yaml --warm-start auto                    # the alike ones

An earlier search is named by its experiment name under storage_path, or given as its folder (or s3:// URI).
`auto` compares this search's data fingerprint (segtune/inspect/fingerprint.py) with the fingerprint.json of
every experiment under storage_path and takes those within warm_start_max_distance, closest first; none alike
and the search starts cold, saying so.

From each earlier search come its best warm_start_configs finished trials (leaderboard.csv, or its saved study
when it has no leaderboard), best first across searches in turn (each one's best, then each one's second ...), at
most n_startup_trials in all: they take the place of the sampler's random startup trials and are queued after
the preset's recipes, the way the recipes are (Optuna's enqueue_trial, through Ray's points_to_evaluate).
Each config is mapped into the current space (map_into_space): a parameter the space lacks is dropped, a
number outside its range is clipped to it, a choice it does not offer skips the config, and a parameter the
config lacks is left to the sampler. A config equal, once mapped, to a recipe or to one queued before is
skipped as a duplicate. What was queued, dropped, clipped and skipped is printed, saved as
segtune/warm_start.json and logged to the MLflow parent run.

starting_points gives what a new search tries before them: with start_from_default, segtune's one default model
(spaces.DEFAULT_MODEL) first, then the preset's recipes. The default is mapped the same way, except that a value
the space does not offer is left to the sampler instead of skipping the model.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import optuna
import yaml

from search.config import SearchConfig
from search.study import open_storage, study_exists, study_url
from segtune import storage
from segtune.inspect import describe_distance, fingerprint_distance
from segtune.paths import ExperimentPaths, experiment_at, experiment_paths
from spaces import DEFAULT_MODEL, get_recipes

MAX_WALKS = 256
"""Paths through the space map_into_space follows at most (one per choice of the parameters a config lacks)."""
_NO_MATCH = object()


class _Refused(Exception):
    """A config value the space cannot take: the config is skipped."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class Mapped:
    """A config mapped into a space."""
    params: dict | None
    """The values to queue (the space's parameter names); None when the config is skipped."""
    dropped: list[str] = field(default_factory=list)
    """Parameters of the config the space does not have (nor fixes to the config's value)."""
    clipped: dict[str, list] = field(default_factory=dict)
    """Parameter -> [config's value, value queued] for numbers brought into the space's range."""
    sampled: list[str] = field(default_factory=list)
    """Parameters of the space the config lacks: the sampler draws them."""
    skipped: str = ""
    """Why the config cannot be queued (a choice the space does not offer); empty when it is queued."""


class _MappingTrial:
    """Stands in for an optuna.Trial while the space runs: answers with the config's values brought into range;
    a parameter the config lacks takes the choice `decisions` gives it, else its first option."""

    def __init__(self, params: dict, decisions: tuple):
        self.params, self.decisions = params, decisions
        self.asked: dict = {}
        self.clipped: dict[str, list] = {}
        self.missing: list[tuple[str, list]] = []
        self.answers: list = []

    def suggest_categorical(self, name, choices):
        choices = list(choices)
        if name not in self.params:
            return self._missing(name, choices)
        value = self.params[name]
        match = next((choice for choice in choices if _same(choice, value)), _NO_MATCH)
        if match is _NO_MATCH:
            raise _Refused(name, f"{name}={value!r} is not among the space's choices {choices}")
        self.asked[name] = match
        return match

    def suggest_int(self, name, low, high, step=1, log=False):
        return self._number(name, int(low), int(high), step, int)

    def suggest_float(self, name, low, high, step=None, log=False):
        return self._number(name, float(low), float(high), step, float)

    def _number(self, name, low, high, step, kind):
        if name not in self.params:
            few = kind is int and high - low <= 8 * (step or 1)  # an integer may steer the space (encoder_depth)
            return self._missing(name, list(range(low, high + 1, step or 1)) if few else [low])
        value = self.params[name]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise _Refused(name, f"{name}={value!r} is not a number, the space's range is [{low}, {high}]")
        mapped = min(max(value, low), high)
        if step:
            mapped = min(low + round((mapped - low) / step) * step, high - (high - low) % step)
        mapped = kind(round(mapped) if kind is int else mapped)
        if mapped != value:
            self.clipped[name] = [value, mapped]
        self.asked[name] = mapped
        return mapped

    def _missing(self, name, options: list):
        answer = self.decisions[len(self.answers)] if len(self.answers) < len(self.decisions) else options[0]
        self.missing.append((name, options))
        self.answers.append(answer)
        return answer


def _same(choice, value) -> bool:
    """A choice equal to the value and of its kind (True is not 1, 1.0 is 1)."""
    return choice == value and isinstance(choice, bool) == isinstance(value, bool) and \
        (choice is None) == (value is None)


def _walks(params: dict, space) -> list[tuple[_MappingTrial, dict]]:
    """The space run with params on every path the parameters params lacks can steer it (up to MAX_WALKS)."""
    walks, pending = [], [()]
    while pending and len(walks) < MAX_WALKS:
        decisions = pending.pop()
        trial = _MappingTrial(params, decisions)
        constants = space(trial) or {}
        walks.append((trial, constants))
        for k in range(len(decisions), len(trial.missing)):
            pending += [(*trial.answers[:k], option) for option in trial.missing[k][1][1:]]
    return walks


def map_into_space(params: dict, space) -> Mapped:
    """`params` (a trial's config from an earlier search) as a point of `space`, a define-by-run space."""
    try:
        return _mapped(params, space)
    except _Refused as refusal:
        return Mapped(None, skipped=str(refusal))


def default_start(space) -> tuple[Mapped, list[str]]:
    """spaces.DEFAULT_MODEL as a point of `space`, and why any of its values is left to the sampler. What else the
    space samples takes TrialConfig's default (augmentations off, no loss warm-up ...) as the `default` baseline of
    bench/compare_searchers.py does; a value the space does not offer is left to the sampler, not the whole model."""
    from trainables import TrialConfig
    params = {**{f.name: f.default for f in fields(TrialConfig)}, **DEFAULT_MODEL}
    refusals = []
    while True:
        try:
            mapped = _mapped(params, space)
        except _Refused as refusal:
            refusals += [str(refusal)] if refusal.name in DEFAULT_MODEL else []
            del params[refusal.name]
            continue
        return replace(mapped, dropped=[name for name in mapped.dropped if name in DEFAULT_MODEL]), refusals


def starting_points(cfg: SearchConfig, space) -> tuple[list[dict], list[str]]:
    """The configs a new search tries first, in order: segtune's default model (start_from_default), then the
    preset's recipes (evaluate_recipes) but one equal to the default; and the lines that say so. The default goes
    first because ASHA lets the first trial to reach an empty rung go on: the first queued config gets the longest
    run, and trained to its length the default beat the presets' recipes on both benchmark datasets."""
    recipes = get_recipes(cfg.space, cfg.space_overrides) if cfg.evaluate_recipes else []
    if not cfg.start_from_default:
        return recipes[:cfg.num_samples], []
    mapped, refusals = default_start(space)
    others = [recipe for recipe in recipes if map_into_space(recipe, space).params != mapped.params]
    points = [mapped.params, *others][:cfg.num_samples]
    if len(others) < len(recipes):
        return points, ["start_from_default: segtune's default model is a recipe of this preset, queued once, first"]
    notes = [f"not in this space: {', '.join(mapped.dropped)}" if mapped.dropped else "",
             _clipped_text(mapped.clipped), *(f"left to the sampler: {refusal}" for refusal in refusals)]
    head = (f"start_from_default: segtune's default model queued first, before {len(points) - 1} recipe(s): "
            + ", ".join(f"{k}={mapped.params[k]!r}" for k in DEFAULT_MODEL if k in mapped.params))
    return points, [head, *(f"  {note}" for note in notes if note)]


def _clipped_text(clipped: dict[str, list]) -> str:
    """'clipped lr 0.05 -> 0.01, ...' for a Mapped's clipped values; empty when none was."""
    return "clipped " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in clipped.items()) if clipped else ""


def _mapped(params: dict, space) -> Mapped:
    walks = _walks(params, space)
    asked, clipped, constants = {}, {}, {}
    for trial, returned in walks:
        asked.update(trial.asked)
        clipped.update(trial.clipped)
        constants.update(returned)
    dropped = [name for name in params if name not in asked and not (name in constants
                                                                     and _same(constants[name], params[name]))]
    sampled = [name for name, _ in walks[0][0].missing]
    return Mapped({name: asked[name] for name in params if name in asked}, dropped, clipped, sampled)


# --------------------------------------------------------------------------- earlier searches

@dataclass(frozen=True)
class EarlierConfig:
    """One finished trial of an earlier search."""
    experiment: str
    trial: str
    """Its Ray trial id (leaderboard), or 'study trial N' when read from the study."""
    val_miou: float
    params: dict


def best_configs(paths: ExperimentPaths, count: int) -> list[EarlierConfig]:
    """The `count` best finished trials of an experiment: from its leaderboard.csv, else from its saved study."""
    name = paths.root.name
    if paths.leaderboard.is_file():
        with paths.leaderboard.open(newline="") as handle:
            rows = [row for row in csv.DictReader(handle)
                    if row["outcome"] != "failed" and math.isfinite(float(row["val_miou"]))]
        rows.sort(key=lambda row: -float(row["val_miou"]))
        return [EarlierConfig(name, row["trial_id"], float(row["val_miou"]), json.loads(row["params"]))
                for row in rows[:count]]
    return _best_in_study(paths, count)


def _best_in_study(paths: ExperimentPaths, count: int) -> list[EarlierConfig]:
    """The best COMPLETE trials of the experiment's study (a search interrupted before writing its leaderboard)."""
    saved = yaml.safe_load(paths.config.read_text()) or {}
    url = study_url(saved.get("study_storage"), paths)
    if not study_exists(url, paths.root.name):
        return []
    study = optuna.load_study(study_name=paths.root.name, storage=open_storage(url))
    done = sorted((t for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])),
                  key=lambda t: -t.value)
    return [EarlierConfig(paths.root.name, f"study trial {t.number}", float(t.value), dict(t.params))
            for t in done[:count]]


def find_experiment(item: str, storage_path: str) -> ExperimentPaths:
    """An earlier experiment named under storage_path, or given as its folder or s3:// URI; refused before any
    compute, naming where it was looked for, when neither holds a segtune experiment."""
    candidates = []
    if "/" not in item and "\\" not in item and item not in (".", ".."):
        candidates.append(experiment_paths(storage_path, item))
    candidates.append(experiment_at(item))
    for paths in candidates:
        if storage.pull(paths).config.is_file():
            return paths
    looked = " nor ".join(p.tune_path for p in candidates)
    raise ValueError(f"option warm_start: {item!r} is no segtune experiment: {looked} holds no "
                     "segtune/search_config.yaml; give the name of an experiment under storage_path or its folder")


def alike_experiments(cfg: SearchConfig, current: ExperimentPaths, fingerprint: dict
                      ) -> tuple[list[tuple[ExperimentPaths, float]], list[str]]:
    """The experiments under cfg.storage_path whose fingerprint lies within cfg.warm_start_max_distance of
    `fingerprint`, closest first, and a line on each experiment looked at."""
    root = experiment_paths(cfg.storage_path, "_").root.parent
    measured, lines, unprinted = [], [], []
    for config in sorted(root.glob("*/segtune/search_config.yaml")):
        paths = ExperimentPaths(config.parent.parent)
        if paths.root == current.root:
            continue
        if not paths.fingerprint.is_file():
            unprinted.append(paths.root.name)
            continue
        theirs = json.loads(paths.fingerprint.read_text())
        measured.append((fingerprint_distance(fingerprint, theirs), paths, describe_distance(fingerprint, theirs)))
    measured.sort(key=lambda found: found[0])
    for distance, paths, described in measured:
        verdict = "alike" if distance <= cfg.warm_start_max_distance else "unlike"
        lines.append(f"  {paths.root.name}: distance {described}: {verdict}")
    if unprinted:
        lines.append(f"  {len(unprinted)} without fingerprint.json (made before searches saved one), not compared: "
                     f"{', '.join(unprinted[:5])}{' ...' if len(unprinted) > 5 else ''}; name them to use them")
    return [(paths, distance) for distance, paths, _ in measured if distance <= cfg.warm_start_max_distance], lines


# --------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class WarmEntry:
    """What became of one earlier config."""
    experiment: str
    trial: str
    val_miou: float
    status: str
    """queued | skipped (cannot be mapped) | duplicate | over the cap."""
    reason: str = ""
    params: dict | None = None
    dropped: list[str] = field(default_factory=list)
    clipped: dict[str, list] = field(default_factory=dict)
    sampled: list[str] = field(default_factory=list)

    def describe(self) -> str:
        head = f"  {self.status} {self.experiment} trial {self.trial} (val mIoU {self.val_miou:.4f})"
        changes = [f"dropped {', '.join(self.dropped)}" if self.dropped else "",
                   _clipped_text(self.clipped),
                   f"sampled {', '.join(self.sampled)}" if self.sampled else "", self.reason]
        changes = [c for c in changes if c]
        return head + (": " + "; ".join(changes) if changes else "")


@dataclass(frozen=True)
class WarmStart:
    """The earlier searches a search starts from and the configs it queues from them."""
    requested: list[str]
    sources: list[dict]
    """{experiment, folder, distance (auto only, else None)} of each earlier search used."""
    entries: list[WarmEntry]
    limit: int
    """Warm configs queued at most: n_startup_trials, or fewer when the recipes leave fewer of num_samples."""
    lines: list[str] = field(default_factory=list)
    """What auto compared, or why nothing is queued."""

    @property
    def queued(self) -> list[dict]:
        return [entry.params for entry in self.entries if entry.status == "queued"]

    def to_dict(self) -> dict:
        return {"requested": self.requested, "sources": self.sources, "limit": self.limit, "notes": self.lines,
                "configs": [asdict(entry) for entry in self.entries]}

    def mlflow_params(self) -> dict:
        return {"warm_start_sources": ",".join(s["experiment"] for s in self.sources) or "none",
                "warm_start_queued": len(self.queued)}

    def describe(self, recipes: int) -> str:
        """`recipes`: the configs queued before these (starting_points: the default model, the recipes)."""
        head = (f"warm start ({','.join(self.requested)}): {len(self.queued)} config(s) from "
                f"{len(self.sources)} earlier search(es) queued after {recipes} starting config(s), at most {self.limit}")
        return "\n".join([head, *self.lines, *(entry.describe() for entry in self.entries)])


def plan_warm_start(cfg: SearchConfig, paths: ExperimentPaths, space, fingerprint: dict,
                    recipes: list[dict]) -> WarmStart | None:
    """The warm start cfg.warm_start asks for (None when it asks for none), every earlier search read and every
    config mapped into `space` before any compute; a named experiment that is not there is refused."""
    if not cfg.warm_start:
        return None
    lines = []
    if cfg.warm_start == ("auto",):
        picked, lines = alike_experiments(cfg, paths, fingerprint)
        sources = [(found, round(distance, 4)) for found, distance in picked]
        if not sources:
            lines.append(f"  no earlier search under {experiment_paths(cfg.storage_path, '_').root.parent} is within "
                         f"warm_start_max_distance {cfg.warm_start_max_distance}: the search starts cold")
    else:
        sources = [(find_experiment(item, cfg.storage_path), None) for item in cfg.warm_start]
    earlier = []
    for found, distance in sources:
        configs = best_configs(found, cfg.warm_start_configs)
        if not configs and distance is None:
            raise ValueError(f"option warm_start: {found.tune_path} has no finished trial to start from (no "
                             "leaderboard.csv, and no completed trial in its study)")
        if not configs:
            lines.append(f"  {found.root.name}: no finished trial yet, nothing taken from it")
        earlier.append(configs)
    limit = max(0, min(cfg.n_startup_trials, cfg.num_samples - len(recipes)))
    entries = _entries([config for rank in zip_longest_ranks(earlier) for config in rank], space, recipes, limit)
    return WarmStart(list(cfg.warm_start),
                     [{"experiment": found.root.name, "folder": found.tune_path, "distance": distance}
                      for found, distance in sources], entries, limit, lines)


def zip_longest_ranks(earlier: list[list[EarlierConfig]]) -> list[list[EarlierConfig]]:
    """Each search's best, then each one's second best ...: [[a1, b1], [a2, b2], [a3]]."""
    return [[configs[rank] for configs in earlier if rank < len(configs)]
            for rank in range(max((len(c) for c in earlier), default=0))]


def _entries(configs: list[EarlierConfig], space, recipes: list[dict], limit: int) -> list[WarmEntry]:
    """Each config mapped into the space, and whether it is queued, skipped, a duplicate or over the cap."""
    seen = [(map_into_space(recipe, space).params, f"recipe {k + 1}") for k, recipe in enumerate(recipes)]
    entries, queued = [], 0
    for config in configs:
        mapped = map_into_space(config.params, space)
        same = next((what for params, what in seen if mapped.params is not None and params == mapped.params), None)
        status = ("skipped" if mapped.params is None else "duplicate" if same else
                  "over the cap" if queued >= limit else "queued")
        reason = mapped.skipped or (f"the same config as {same}" if same else "")
        entries.append(WarmEntry(config.experiment, config.trial, config.val_miou, status, reason, mapped.params,
                                 mapped.dropped, mapped.clipped, mapped.sampled))
        if status == "queued":
            queued += 1
            seen.append((mapped.params, f"{config.experiment} trial {config.trial}"))
    return entries


def save_warm_start(warm: WarmStart, path: Path) -> None:
    path.write_text(json.dumps(warm.to_dict(), indent=1))
