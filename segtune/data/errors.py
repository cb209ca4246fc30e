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


class ColourMasksWithoutMap(DataError):
    """The masks are RGB colour masks and no colour_map says which class each colour is: one message, not one per mask."""

    def __init__(self, source: str, mask_dir: str, colour_masks: list, total: int):
        super().__init__(source, [(mask_dir, f"{len(colour_masks)} of {total} masks are RGB colour masks and no "
                                             "colour_map says which class each colour is")])
        self.mask_files = list(colour_masks)
        """The colour masks' paths, for segtune inspect to list their colours."""
        self.args = (f"dataset {source}: {mask_dir} holds RGB colour masks ({len(colour_masks)} of {total} masks) and no "
                     f"colour_map says which class each colour is; run `segtune inspect {source}` to list their colours "
                     f"and print the colour_map to use (or `segtune init {source}` to write a search config with it)",)
