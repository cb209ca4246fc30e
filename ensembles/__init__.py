"""Ensembles: not built yet (issue 4). Will stack the best trials of a search and export one bundle."""

__all__: list[str] = []
