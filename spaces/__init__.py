"""What may be tried: named define-by-run search spaces, their starting recipes, and YAML overrides.

    space = get_space("terrain", overrides={"loss": ["dice", "focal_tversky"], "batch_size": 16})
"""

from __future__ import annotations

from typing import Callable

from spaces.default import default_space, smoke_space
from spaces.overrides import allows, apply_overrides, field_name
from spaces.presets import DEFAULT_MODEL, RECIPES, WARMUP_EPOCHS, crop_weed_space, generic_space, terrain_space

SPACES: dict[str, Callable] = {"default": default_space, "smoke": smoke_space, "crop_weed": crop_weed_space,
                               "terrain": terrain_space, "generic": generic_space}


def get_space(name: str, overrides: dict | None = None) -> Callable:
    if name not in SPACES:
        raise KeyError(f"unknown space {name!r}; valid spaces: {', '.join(sorted(SPACES))}")
    return apply_overrides(SPACES[name], overrides) if overrides else SPACES[name]


def get_recipes(name: str, overrides: dict | None = None) -> list[dict]:
    """The preset's starting recipes, less the values an override rules out (those are sampled instead)."""
    overrides = overrides or {}
    return [{k: v for k, v in recipe.items() if field_name(k) not in overrides or allows(overrides[field_name(k)], v)}
            for recipe in RECIPES.get(name, [])]


def longest_warmup(name: str, overrides: dict | None = None) -> int:
    """The most epochs of cross-entropy warm-up a trial of the space may get, after the overrides (a list of
    choices, a {low, high} range or one value of `warmup_epochs`); 0 for a space without the warm-up."""
    rule = (overrides or {}).get("warmup_epochs", WARMUP_EPOCHS.get(name, (0,)))
    if isinstance(rule, dict):
        return int(rule["high"])
    return max(int(v) for v in (rule if isinstance(rule, (list, tuple)) else [rule]))


__all__ = ["DEFAULT_MODEL", "SPACES", "field_name", "get_recipes", "get_space", "longest_warmup"]
