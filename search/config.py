"""SearchConfig: the one frozen description of a search, from a YAML file plus CLI overrides.

    cfg = load_config("spaces/configs/cwfid.yaml", {"num_samples": 12})
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from segtune.names import DEFAULT_TRACKING_URI
from segtune.paths import is_remote
from segtune.tiling import TILE_MULTIPLE
from segtune.weights import CACHE_FOLDER, is_weights_name
from spaces import SPACES, longest_warmup


DEFAULT_GRACE_PERIOD = 2
"""ASHA's first rung where the space has no cross-entropy warm-up: earlier ranks close to chance (README)."""
SAMPLERS = ("tpe", "random", "gp")
"""Optuna samplers a search may use (search/searcher.py builds them)."""
SCHEDULERS = ("asha", "hyperband", "fifo")
"""Ray Tune schedulers a search may use (search/driver.py builds them)."""


@dataclass(frozen=True)
class SearchConfig:
    # data
    data: str = "synthetic"
    """Dataset: a folder (images/ + masks/), an .npz of (N, 2, H, W) pairs, or 'synthetic'."""
    classes: tuple[str, ...] | None = None
    """Class names in index order, when the data has no classes.json (colour folders, NPZ)."""
    colour_map: dict[str, int] | None = None
    """For RGB colour masks: 'R,G,B' -> class index; several colours may map to one class. Single-channel masks: grey values 'V' (e.g. '255': 1 for 0/255 binary masks)."""
    ignore_index: int | None = 255
    """Mask value that is not scored (classes.json overrides it); null if every pixel is labelled."""
    resize: tuple[int, int] | None = None
    """Resize every image to (H, W) when it is read; null keeps the original size."""
    crop: tuple[int, int] = (64, 64)
    """Random training crop (H, W); validation scores whole images."""
    val_fraction: float = 0.15
    """Share of images for validation when the dataset has no val split."""
    test_fraction: float = 0.15
    """Share of images held out for the final test when the dataset has no test split."""
    exclude_from_mean: tuple[str, ...] = ()
    """Class names reported per class but left out of the mIoU mean (e.g. background)."""
    exclude_file: str | None = None
    """Exclusion list (one image id per line, '# reason'; segtune inspect writes one): ids left out of every split."""
    # search
    space: str = "default"
    """Search space: default, smoke, crop_weed, terrain or generic (spaces/)."""
    space_overrides: dict | None = None
    """Narrow or widen the space: parameter -> list of choices | {low, high, log} | one fixed value."""
    evaluate_recipes: bool = True
    """Try the preset's starting recipes (the reports' final settings) before TPE's own proposals."""
    start_from_default: bool = False
    """Queue segtune's one default model (Unet tu-resnet18 d4, CE+Dice, AdamW 1e-3, cosine) first, before the recipes, as far as the space offers its values."""
    warm_start: tuple[str, ...] = ()
    """Earlier searches whose best configs are tried next (names under storage_path or experiment folders), or auto: those whose data fingerprint is alike."""
    warm_start_configs: int = 3
    """Best configs taken from each earlier search of warm_start; at most n_startup_trials in all."""
    warm_start_max_distance: float = 0.2
    """warm_start auto: the largest data-fingerprint distance (0 alike, 1 unlike) of an earlier search it picks."""
    num_samples: int = 12
    """Number of trials."""
    time_budget_s: float | None = None
    """Stop starting and running trials after this many seconds; null for no limit."""
    epoch_budget: int | None = None
    """Stop starting and running trials once they have run this many epochs in all (summed over trials); null for no limit."""
    sampler: str = "tpe"
    """Who proposes trials: tpe (Optuna TPE), random (RandomSampler) or gp (GPSampler, which learns only from completed trials)."""
    tpe_multivariate: bool = True
    """tpe: model the parameters jointly (Optuna's multivariate TPE) rather than one at a time."""
    tpe_group: bool = True
    """tpe: split a conditional space into groups of parameters sampled together; needs tpe_multivariate."""
    tpe_constant_liar: bool = True
    """tpe: treat running trials as bad so concurrent proposals stay apart."""
    scheduler: str = "asha"
    """Who stops trials early: asha, hyperband (asynchronous, hyperband_brackets brackets) or fifo (none)."""
    hyperband_brackets: int = 3
    """hyperband: brackets, bracket k's first rung at grace_period * reduction_factor**k epochs."""
    max_epochs: int = 10
    """Epochs a trial may run (ASHA's max_t)."""
    grace_period: int | None = None
    """Epochs every trial runs before ASHA (or hyperband) may stop it; null: 2, or one past the space's longest cross-entropy warm-up (3 for terrain and generic), at most max_epochs."""
    reduction_factor: int = 2
    """ASHA (or hyperband) keeps 1/reduction_factor of trials at each rung."""
    progressive_resolution: bool = False
    """Train each trial's first grace_period epochs (ASHA's first rung) at progressive_scale of its scale, so weak trials are cut while cheap; scores stay at the read size."""
    progressive_scale: float = 0.5
    """progressive_resolution: factor in (0, 1) on a trial's scale and training crop in its first grace_period epochs."""
    n_startup_trials: int = 4
    """Random trials before TPE (or gp) proposes; must be below num_samples."""
    max_concurrent_trials: int = 2
    """Trials running at once; small so TPE learns from finished rungs."""
    steps_per_epoch: int | None = None
    """Batches per epoch; null for one pass over the training split."""
    cpus_per_trial: float = 1
    """CPUs reserved per trial: its own process plus its DataLoader workers."""
    gpus_per_trial: float = 0
    """GPU share per trial: 0.25 packs four trials on a GPU, each held to a quarter of its memory."""
    num_workers: int | None = None
    """DataLoader workers per trial; null: cpus_per_trial - 1, so the trial uses exactly the CPUs it reserves."""
    mixed_precision: bool = True
    """On a GPU: bf16 autocast where the card supports it, else fp16 with loss scaling; false for float32."""
    channels_last: bool = True
    """On a GPU: channels-last memory format for the model and batches; false for NCHW."""
    max_failures: int = 0
    """Retries of a trial that crashed (a node lost); a failing trial never stops the search."""
    encoder_weights: str | None = None
    """null trains from scratch; imagenet (or a weights name smp/timm know, e.g. a timm tag) fetched once into weights_cache; or a local encoder state-dict file."""
    weights_cache: str | None = None
    """Folder (or s3:// URI) every node reads, holding weights fetched by name (`segtune weights fetch`); null: $SEGTUNE_CACHE/weights, else <storage_path>/weights."""
    seed: int = 0
    """Seed for the sampler, every trial and (unless split_seed is set) the splits."""
    split_seed: int | None = None
    """Seed for carving the val/test splits; null uses seed (set it to compare seeds on the same splits)."""
    # outputs
    keep_val_probabilities: bool = True
    """Each trial keeps its best epoch's float16 class probabilities on the validation images (for `segtune ensemble --select library`)."""
    name: str | None = None
    """Experiment name: the results folder under storage_path and the MLflow parent run; null makes segtune-<space>-<time>."""
    storage_path: str = "segtune_results"
    """Where trials and checkpoints go: a folder, a shared path every node mounts, or s3://bucket/prefix."""
    tracking_uri: str = DEFAULT_TRACKING_URI
    """MLflow tracking URI: a local database by default, or http://host:5000."""
    mlflow_experiment: str = "segtune"
    """MLflow experiment holding the search's parent run."""
    study_storage: str | None = None
    """Database of the Optuna study (optuna-dashboard reads it): sqlite:////abs/file.db, postgresql://host/db; null: segtune/study.db in the experiment folder."""
    ray_address: str | None = None
    """Ray cluster address ('auto' on a cluster head); null starts a local Ray."""

    def __post_init__(self):
        def need(ok: bool, option: str, message: str):
            if not ok:
                raise ValueError(f"option {option}: {message}")
        for option, hint in typing.get_type_hints(SearchConfig).items():
            value = getattr(self, option)
            need(_has_type(value, hint), option, f"{_shown(value)} is not {_type_name(hint)}")
        need(self.space in SPACES, "space", f"{self.space!r} is not one of {sorted(SPACES)}")
        for param, rule in (self.space_overrides or {}).items():
            need(not isinstance(rule, dict) or all(_is_number(rule.get(end)) for end in ("low", "high")),
                 f"space_overrides.{param}", f"a range needs numbers for low and high, got {rule}")
        _check_scale_override((self.space_overrides or {}).get("scale"), need)
        need(self.num_samples >= 1, "num_samples", "must be >= 1")
        need(self.sampler in SAMPLERS, "sampler", f"{self.sampler!r} is not one of {list(SAMPLERS)}")
        need(self.scheduler in SCHEDULERS, "scheduler", f"{self.scheduler!r} is not one of {list(SCHEDULERS)}")
        need(0 <= self.n_startup_trials < self.num_samples or self.num_samples == 1 or self.sampler == "random",
             "n_startup_trials", f"{self.n_startup_trials} must be below num_samples ({self.num_samples}) or "
             f"{self.sampler.upper()} never proposes")
        need(self.tpe_multivariate or not self.tpe_group, "tpe_group",
             "Optuna's group TPE works only with tpe_multivariate: true; set tpe_group: false or tpe_multivariate: true")
        self._check_warm_start(need)
        need(self.epoch_budget is None or self.epoch_budget >= 1, "epoch_budget",
             "must be >= 1 epoch, or null for no limit")
        need(self.max_epochs >= 1, "max_epochs", "must be >= 1")
        need(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch",
             "must be >= 1, or null for one pass over the training split")
        need(self.time_budget_s is None or self.time_budget_s > 0, "time_budget_s", "must be > 0 seconds, or null for no limit")
        if self.grace_period is None:
            object.__setattr__(self, "grace_period", default_grace_period(self.space, self.space_overrides, self.max_epochs))
        need(1 <= self.grace_period <= self.max_epochs, "grace_period", "must be between 1 and max_epochs")
        need(self.reduction_factor >= 2, "reduction_factor", "must be >= 2")
        need(0 < self.progressive_scale < 1, "progressive_scale", f"{self.progressive_scale} must be in (0, 1)")
        need(not self.progressive_resolution or self.grace_period < self.max_epochs, "progressive_resolution",
             f"trains the first grace_period ({self.grace_period}) epochs at a reduced scale and the rest at full "
             f"scale; set grace_period below max_epochs ({self.max_epochs})")
        need(self.hyperband_brackets >= 1, "hyperband_brackets", "must be >= 1")
        first_rung = self.grace_period * self.reduction_factor ** (self.hyperband_brackets - 1)
        need(self.scheduler != "hyperband" or first_rung < self.max_epochs, "hyperband_brackets",
             f"{self.hyperband_brackets} brackets put the last one's first rung at grace_period * reduction_factor**"
             f"{self.hyperband_brackets - 1} = {first_rung} epochs, not below max_epochs ({self.max_epochs}): its trials "
             "would never be judged; use fewer brackets or more max_epochs")
        need(self.max_concurrent_trials >= 1, "max_concurrent_trials", "must be >= 1")
        need(0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1, "val_fraction/test_fraction", "must be in [0, 1)")
        need(min(self.crop) >= TILE_MULTIPLE and all(c % TILE_MULTIPLE == 0 for c in self.crop), "crop",
             f"{self.crop} must be [H, W], each a multiple of {TILE_MULTIPLE}")
        need(self.resize is None or min(self.resize) >= TILE_MULTIPLE, "resize", f"{list(self.resize or [])} must be "
             f"[H, W] of at least {TILE_MULTIPLE} pixels each, or null to keep the original size")
        need(self.gpus_per_trial == 0 or self.gpus_per_trial > 0 and (1 / self.gpus_per_trial).is_integer()
             or self.gpus_per_trial >= 1,
             "gpus_per_trial", "use a fraction whose inverse is a whole number (0.5, 0.25) so trials pack evenly")
        need(self.cpus_per_trial > 0, "cpus_per_trial", "must be > 0")
        need(self.num_workers is None or 0 <= self.num_workers <= max(0, self.cpus_per_trial - 1), "num_workers",
             f"{self.num_workers} DataLoader workers need cpus_per_trial >= {(self.num_workers or 0) + 1} (one CPU "
             f"for the trial, one per worker), not {self.cpus_per_trial}; raise cpus_per_trial or leave num_workers unset")
        need(self.name is None or (Path(self.name).name == self.name and self.name not in ("", ".", "..")
                                   and "\\" not in self.name), "name",
             f"{self.name!r} must be a plain folder name (no '/', '..' or absolute path): it is made under storage_path")
        need(self.name != CACHE_FOLDER or self.weights_cache is not None or bool(os.environ.get("SEGTUNE_CACHE")),
             "name", f"{CACHE_FOLDER!r} is the folder of the weights cache under storage_path; choose another name")
        need(is_remote(self.storage_path) or not _inside_a_file(Path(self.storage_path).expanduser()), "storage_path",
             f"{self.storage_path} is a file or inside one; give a folder (created if missing)")
        if self.study_storage is not None:
            object.__setattr__(self, "study_storage", _absolute_sqlite(self.study_storage))
            problem = _database_url_problem(self.study_storage)
            need(not problem, "study_storage", problem)
        # the saved config then reads the same data from any folder (segtune ensemble, --resume, bench scripts)
        if self.data != "synthetic":
            object.__setattr__(self, "data", str(Path(self.data).expanduser().absolute()))
        if self.exclude_file is not None:
            object.__setattr__(self, "exclude_file", str(Path(self.exclude_file).expanduser().absolute()))
        if self.encoder_weights is not None and not is_weights_name(self.encoder_weights):
            # Ray runs each trial in a folder of its own, where a relative path would point nowhere
            object.__setattr__(self, "encoder_weights", str(Path(self.encoder_weights).expanduser().resolve()))
            need(Path(self.encoder_weights).is_file(), "encoder_weights",
                 f"{self.encoder_weights} is not a file; give a local encoder state-dict (.pt/.pth), a weights name "
                 "such as imagenet, or null")
        if self.weights_cache is not None and not is_remote(self.weights_cache):
            object.__setattr__(self, "weights_cache", str(Path(self.weights_cache).expanduser().resolve()))
        need(self.weights_cache is None or (self.weights_cache.startswith("s3://") if is_remote(self.weights_cache)
                                            else not _inside_a_file(Path(self.weights_cache))),
             "weights_cache", f"{self.weights_cache} must be a folder (created if missing) or an s3:// URI")
        need("pretrained" not in (self.space_overrides or {}) or self.encoder_weights is not None,
             "space_overrides.pretrained", "searches starting from encoder_weights or not: set encoder_weights "
             "(imagenet, another weights name or a file)")

    def _check_warm_start(self, need) -> None:
        need(all(name.strip() for name in self.warm_start), "warm_start", f"{list(self.warm_start)} holds an empty name")
        need("auto" not in self.warm_start or len(self.warm_start) == 1, "warm_start",
             "auto picks the earlier searches itself: give auto alone, or name the experiments")
        need(self.warm_start != ("auto",) or not is_remote(self.storage_path), "warm_start",
             f"auto looks through the experiments of a local storage_path, not {self.storage_path}; name them instead")
        need(self.warm_start_configs >= 1, "warm_start_configs", "must be >= 1")
        need(0 <= self.warm_start_max_distance <= 1, "warm_start_max_distance", "must be in [0, 1]")
        need(not self.warm_start or self.n_startup_trials >= 1, "warm_start",
             "warm configs take the place of the sampler's startup trials (at most n_startup_trials of them); "
             "set n_startup_trials >= 1")

    @property
    def splits_seed(self) -> int:
        """The seed the val/test splits are carved with."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def loader_workers(self) -> int:
        """DataLoader workers per trial: as set, or every reserved CPU but the trial's own."""
        return self.num_workers if self.num_workers is not None else max(0, int(self.cpus_per_trial) - 1)

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def default_grace_period(space: str, overrides: dict | None, max_epochs: int) -> int:
    """grace_period left null: DEFAULT_GRACE_PERIOD, or one epoch past the space's longest cross-entropy warm-up
    so ASHA judges trials on their switched loss (validate_space refuses less), at most max_epochs."""
    try:
        warmup = longest_warmup(space, overrides)
    except (ValueError, TypeError, KeyError):  # a malformed warmup_epochs override: the space check names it
        warmup = 0
    return min(max_epochs, max(DEFAULT_GRACE_PERIOD, warmup + 1))


def _check_scale_override(rule, need) -> None:
    """space_overrides.scale: shares of the read size in (0, 1], as a list, a {low, high} range or one value."""
    values = [] if rule is None else rule if isinstance(rule, list) else \
        [rule.get("low"), rule.get("high")] if isinstance(rule, dict) else [rule]
    need(all(_is_number(v) and 0 < float(v) <= 1 for v in values), "space_overrides.scale",
         f"{rule} must be shares of the size images are read at, each in (0, 1] (e.g. [0.5, 1.0]); "
         "to work above the read size, enlarge it with resize")


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _has_type(value, hint) -> bool:
    """Whether `value` fits a field's type hint; a bool is not a number here."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, arm) for arm in args)
    if origin is tuple:
        return (isinstance(value, tuple) and (args[-1] is Ellipsis or len(value) == len(args))
                and all(_has_type(item, args[0]) for item in value))
    if origin is dict:
        return isinstance(value, dict) and all(_has_type(k, args[0]) and _has_type(v, args[1]) for k, v in value.items())
    if hint in (int, float):
        return isinstance(value, int if hint is int else (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arm) for arm in args)
    if origin is tuple:
        return f"a list of {'' if args[-1] is Ellipsis else len(args)} {'integers' if args[0] is int else 'names'}"
    if origin is dict or hint is dict:
        return "a mapping" + (" of 'R,G,B' to a class index" if args else "")
    return {int: "an integer", float: "a number", str: "text", bool: "true or false", type(None): "null"}[hint]


def _shown(value) -> str:
    return "null" if value is None else repr(list(value) if isinstance(value, tuple) else value)


def _is_number(value) -> bool:
    if isinstance(value, str):  # YAML reads 1e-2 (no dot) as text
        try:
            float(value)
        except ValueError:
            return False
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _inside_a_file(path: Path) -> bool:
    return any(p.exists() and not p.is_dir() for p in (path, *path.parents))


def _absolute_sqlite(url: str) -> str:
    """An SQLite URL with its file made absolute (a resumed search may run from another folder); others as given."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix):] in ("", ":memory:") or url[len(prefix):].startswith("/"):
        return url
    return prefix + str(Path(url[len(prefix):]).expanduser().resolve())


def _database_url_problem(url: str) -> str:
    """What keeps url from holding a study that outlives the driver, or '' when nothing does."""
    import sqlalchemy  # only for a config that names a database
    try:
        parsed = sqlalchemy.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
            return f"{url} is in memory; the study must outlive the driver: give a file, sqlite:////abs/path/studies.db"
        if parsed.password:
            return (f"{parsed.render_as_string(hide_password=True)} holds a password, which would be saved with the "
                    "experiment (search_config.yaml, MLflow); leave it out and give it to the database driver (for "
                    "PostgreSQL: PGPASSWORD or ~/.pgpass)")
        sqlalchemy.create_engine(parsed).dispose()  # imports the database driver; connects to nothing
    except sqlalchemy.exc.ArgumentError:
        return f"{url!r} is not a database URL such as sqlite:////abs/path/studies.db or postgresql://host/db"
    except ImportError as error:
        return f"{url}: the database driver is not installed ({error})"
    return ""


def field_docs() -> dict[str, str]:
    """Each option's one-line docstring, read from this file (for --help and the README)."""
    import ast
    tree = ast.parse(Path(__file__).read_text())
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SearchConfig").body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = after.value.value
    return docs


def load_config(path: str | None, overrides: dict | None = None) -> SearchConfig:
    """Read a YAML file with yaml.safe_load, then apply overrides; unknown keys are refused."""
    values = {}
    if path:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"--config {file}: no such file")
        try:
            values = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            raise ValueError(f"--config {file}{f', line {mark.line + 1}' if mark else ''}: not valid YAML "
                             f"({getattr(error, 'problem', None) or error})") from None
        except UnicodeDecodeError:
            raise ValueError(f"--config {file}: not a UTF-8 text file") from None
        if not isinstance(values, dict):
            raise ValueError(f"--config {file}: expected a mapping of option: value")
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name: f for f in dataclasses.fields(SearchConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}{' in ' + str(path) if path else ''}; valid: {sorted(known)}")
    hints = typing.get_type_hints(SearchConfig)
    return SearchConfig(**{k: _coerce(k, v, hints[k]) for k, v in values.items()})


def _coerce(name, value, hint):
    """A YAML or flag value as the option's type where the reading is unambiguous; SearchConfig refuses the rest."""
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if is_union else hint
    if typing.get_origin(kind) is tuple and isinstance(value, (str, list)):
        inner = typing.get_args(kind)[0]
        items = value
        if isinstance(value, str):  # "256x192" or "256,192" for sizes; "a,b,c" for names
            items = [v.strip() for v in (value.lower().replace("x", ",") if inner is int else value).split(",") if v.strip()]
        try:
            return tuple(inner(v) if isinstance(v, str) else v for v in items)
        except ValueError:
            raise ValueError(f"option {name}: {value!r} is not {_type_name(hint)}") from None
    if kind is float and isinstance(value, str) and _is_number(value):
        return float(value)
    return value


def save_config(cfg: SearchConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
