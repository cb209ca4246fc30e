"""Drive Ray Tune: the SearchConfig, the searcher and scheduler, and the run_search entry point."""

from search.config import SearchConfig, load_config
from search.driver import SearchOutcome, run_search, search_inputs

__all__ = ["SearchConfig", "SearchOutcome", "load_config", "run_search", "search_inputs"]
