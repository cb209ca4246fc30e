"""Narrow or widen a space from the YAML config, without writing Python.

    space_overrides:
      architecture: [Unet, FPN]          # a list: the choices (a subset, or new ones)
      lr: {low: 1.0e-4, high: 1.0e-2}    # a mapping: a new range (log scale kept unless `log` is given)
      batch_size: 16                     # a single value: fixed, no longer searched
      pretrained: [true, false]          # added to any space: start from encoder_weights or not, searched
      scale: [0.5, 1.0]                  # added to any space: the share of the read size a trial works at

`pretrained` and `scale` are the parameters no space suggests itself. `pretrained` (a search stays offline
unless asked), named in the overrides, is suggested after the space's own parameters wherever the sampled
encoder has pretrained weights, and fixed false where it has none. `scale` (trainables/scale.py), named there,
is suggested last, as a list of choices, a {low, high} range or one fixed value.

validate_space() samples the overridden space before any trial starts and refuses an override
that names no parameter of the space or produces a configuration a trial would reject.
"""

from __future__ import annotations

import optuna

from segtune.weights import has_weights

_MISSING = object()
PRETRAINED = "pretrained"
"""The parameter space_overrides adds to any space (TrialConfig.pretrained)."""
SCALE = "scale"
"""The other parameter space_overrides adds to any space (TrialConfig.scale)."""


def field_name(param: str) -> str:
    """`encoder@dilatable` -> `encoder`: the TrialConfig field a parameter sets."""
    return param.split("@", 1)[0]


class OverriddenSpace:
    """A define-by-run space whose suggestions follow the overrides (picklable, for Ray's searcher state)."""

    def __init__(self, space, overrides: dict):
        self.space, self.overrides = space, dict(overrides)

    def __call__(self, trial) -> dict:
        wrapped = _OverriddenTrial(trial, self.overrides)
        constants = self.space(wrapped) or {}
        if PRETRAINED in self.overrides:
            _suggest_pretrained(wrapped, {**{field_name(k): v for k, v in trial.params.items()}, **constants,
                                          **wrapped.fixed})
        if SCALE in self.overrides:
            wrapped.suggest_float(SCALE, 0.0, 1.0)  # the override's choices, range or value replace these bounds
        return {**constants, **wrapped.fixed}


def _suggest_pretrained(trial: "_OverriddenTrial", sampled: dict) -> None:
    """`pretrained` as the overrides say where the trial's encoder has weights; false where it has none."""
    if has_weights(sampled["encoder"]):
        trial.suggest_categorical(PRETRAINED, [True, False])
    else:
        trial.fixed[PRETRAINED] = False


def apply_overrides(space, overrides: dict) -> OverriddenSpace:
    return OverriddenSpace(space, overrides)


class _OverriddenTrial:
    def __init__(self, trial, overrides: dict):
        self._trial, self._overrides, self.fixed = trial, overrides, {}

    def __getattr__(self, name):
        return getattr(self._trial, name)

    def _rule(self, name):
        return self._overrides.get(field_name(name), _MISSING)

    def _fixed_or_choices(self, name, rule):
        if isinstance(rule, list):
            if not rule:
                raise ValueError(f"option space_overrides.{field_name(name)}: the list of choices is empty")
            return self._trial.suggest_categorical(name, rule)
        self.fixed[field_name(name)] = rule
        return rule

    def suggest_categorical(self, name, choices):
        rule = self._rule(name)
        if rule is _MISSING:
            return self._trial.suggest_categorical(name, choices)
        if isinstance(rule, dict):
            raise ValueError(f"option space_overrides.{field_name(name)}: is a choice among {list(choices)}; "
                             "give a list of choices or one value, not a range")
        return self._fixed_or_choices(name, rule)

    def suggest_int(self, name, low, high, step=1, log=False):
        return self._numeric(name, self._trial.suggest_int, int, low, high, step, log)

    def suggest_float(self, name, low, high, step=None, log=False):
        return self._numeric(name, self._trial.suggest_float, float, low, high, step, log)

    def _numeric(self, name, suggest, kind, low, high, step, log):
        rule = self._rule(name)
        if rule is _MISSING:
            return suggest(name, low, high, step=step, log=log)
        if isinstance(rule, dict):
            low, high = _range(name, rule)
            return suggest(name, kind(low), kind(high), log=bool(rule.get("log", log)))
        return self._fixed_or_choices(name, rule)


def allows(rule, value) -> bool:
    """Whether an override keeps `value` possible (recipes keep such values, drop the others)."""
    if isinstance(rule, list):
        return value in rule
    if isinstance(rule, dict):
        return float(rule["low"]) <= value <= float(rule["high"])
    return value == rule


def _range(name, rule: dict):
    unknown = set(rule) - {"low", "high", "log"}
    if unknown or "low" not in rule or "high" not in rule or not float(rule["low"]) < float(rule["high"]):
        raise ValueError(f"option space_overrides.{field_name(name)}: a range needs low < high "
                         f"(and optionally log), got {rule}")
    return rule["low"], rule["high"]


def validate_space(space, overrides: dict | None, fixed: dict, grace_period: int, samples: int = 64) -> None:
    """Sample the space like a search would and check every configuration before any compute."""
    from trainables import TrialConfig
    from trainables.model import is_valid_combination
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        TrialConfig.from_dict(fixed)
    except (ValueError, KeyError) as error:  # the data or a search option, whatever the space samples
        raise ValueError(f"the dataset and search options give every trial an invalid setting: {error}") from None
    blamed = "space_overrides" if overrides else "space"
    _refuse_unknown_encoders(overrides or {})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen, longest_warmup = set(), 0
    for _ in range(samples):
        trial = study.ask()
        constants = space(trial) or {}
        config = {field_name(k): v for k, v in {**trial.params, **constants}.items()}
        seen |= set(config)
        try:
            cfg = TrialConfig.from_dict({**fixed, **config})
        except (ValueError, KeyError) as error:
            raise ValueError(f"option {blamed}: the space samples an invalid trial {config}: {error}") from None
        if not is_valid_combination(cfg.architecture, cfg.encoder, cfg.encoder_depth):
            raise ValueError(f"option {blamed}: {cfg.architecture} with {cfg.encoder} at depth "
                             f"{cfg.encoder_depth} cannot be built; drop one of them from the overrides")
        longest_warmup = max(longest_warmup, cfg.warmup_epochs)
        study.tell(trial, 0.0)
    unknown = sorted(set(overrides or {}) - seen)
    if unknown:
        raise ValueError(f"option space_overrides: {unknown} are not parameters of this space; "
                         f"its parameters: {sorted(seen - set(fixed))}")
    if longest_warmup >= grace_period:
        raise ValueError(f"option grace_period: the space warms up with cross-entropy for up to {longest_warmup} "
                         f"epoch(s); set grace_period to at least {longest_warmup + 1} so ASHA judges trials after "
                         "the switch")


def pretrained_encoders(space, overrides: dict | None, samples: int = 64) -> list[str]:
    """The encoders a trial of the space may start from pretrained weights: every encoder it samples (read from the
    choices of its `encoder` parameters), or with `pretrained` in the overrides those with weights, if true is one
    of its choices."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    encoders = set()
    for _ in range(samples):
        trial = study.ask()
        constants = space(trial) or {}
        encoders |= {c for name, d in trial.distributions.items() if field_name(name) == "encoder" for c in d.choices}
        encoders |= {v for k, v in constants.items() if field_name(k) == "encoder"}
        study.tell(trial, 0.0)
    encoders = encoders or {_default_encoder()}  # a space that never samples one: every trial has the default
    rule = (overrides or {}).get(PRETRAINED, _MISSING)
    if rule is _MISSING:
        return sorted(encoders)
    if True not in (rule if isinstance(rule, list) else [rule]):
        return []
    return sorted(e for e in encoders if has_weights(e))


def _default_encoder() -> str:
    from trainables import TrialConfig
    return TrialConfig.encoder


def _refuse_unknown_encoders(overrides: dict) -> None:
    """An encoder name neither smp nor timm knows fails only inside trials (the scSE probe swallows it): refuse it here."""
    from trainables.model import encoder_exists
    for param, rule in overrides.items():
        if field_name(param) == "encoder":
            unknown = [name for name in (rule if isinstance(rule, list) else [rule]) if not encoder_exists(str(name))]
            if unknown:
                raise ValueError(f"option space_overrides.{param}: {unknown} are not encoders smp or timm know; use "
                                 "an smp encoder name (resnet18, efficientnet-b0...) or tu-<timm model> "
                                 "(tu-resnet18; timm.list_models() lists them)")
