"""One error for bad input data, listing every bad file at once."""

from __future__ import annotations


class DataError(ValueError):
    """Raised before any trial starts when the dataset cannot be used as it is."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"  {where}: {why}" for where, why in problems]
        super().__init__(
            f"{len(problems)} problem(s) in dataset {source}; fix or remove these files and run again:\n"
            + "\n".join(lines))
