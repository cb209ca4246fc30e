"""What may be tried: named define-by-run search spaces.

    space = get_space("default")   # a function of an optuna.Trial, for Ray's OptunaSearch
"""

from __future__ import annotations

from typing import Callable

from spaces.default import default_space, smoke_space

SPACES: dict[str, Callable] = {"default": default_space, "smoke": smoke_space}


def get_space(name: str) -> Callable:
    if name not in SPACES:
        raise KeyError(f"unknown space {name!r}; valid spaces: {', '.join(sorted(SPACES))}")
    return SPACES[name]


__all__ = ["SPACES", "get_space"]
