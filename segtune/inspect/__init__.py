"""Know the data before searching: statistics, duplicates, outliers, leakage and an exclusion list.

    report = inspect_dataset(load_dataset("DATA"))      # a JSON-ready dict of findings
    write_outputs(report, data, "segtune_inspect/DATA")  # report.txt/json, exclusions.txt, contact sheets

The command is `segtune inspect DATA` (segtune/inspect/run.py).
"""

from segtune.inspect.duplicates import DEFAULT_HASH_THRESHOLD, near_duplicate_groups
from segtune.inspect.fingerprint import data_fingerprint, describe_distance, fingerprint_distance
from segtune.inspect.inspection import duplicate_groups, inspect_dataset, suggest_class_weights
from segtune.inspect.outputs import write_outputs
from segtune.inspect.report import format_report
from segtune.inspect.statistics import measure_images

__all__ = ["DEFAULT_HASH_THRESHOLD", "data_fingerprint", "describe_distance", "duplicate_groups", "fingerprint_distance",
           "format_report", "inspect_dataset", "measure_images", "near_duplicate_groups", "suggest_class_weights",
           "write_outputs"]
