"""SearchConfig.exclude_file: a path or null, from YAML or the command line, refused otherwise by name."""

from __future__ import annotations

import pytest

from search.config import SearchConfig, load_config
from search.run import parse_config


def test_exclude_file_defaults_to_none_and_takes_a_path_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert SearchConfig().exclude_file is None
    file = tmp_path / "c.yaml"
    file.write_text("exclude_file: lists/exclusions.txt\n")
    assert load_config(str(file)).exclude_file == str(tmp_path / "lists" / "exclusions.txt")
    cfg, _ = parse_config(["--exclude-file", "x.txt"])
    assert cfg.exclude_file == str(tmp_path / "x.txt")


@pytest.mark.parametrize("value", [3, ["a.txt"], {"a": 1}])
def test_exclude_file_that_is_not_a_path_is_refused(value):
    with pytest.raises(ValueError, match="exclude_file"):
        load_config(None, {"exclude_file": value})
