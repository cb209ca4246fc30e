"""--select library's inputs: the validation maps trials kept, copied into the ensemble's store; its options."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ensembles.members import Member
from ensembles.probabilities import ProbabilityStore, import_val_probabilities
from ensembles.run import main as ensemble_main
from trainables.val_probabilities import write_val_probabilities


def kept_member(folder: Path, trial_id: str, shape: tuple[int, int], value: float) -> Member:
    """A member whose trial kept maps of images a and b, every probability `value`."""
    checkpoint = folder / trial_id
    checkpoint.mkdir()
    kept = write_val_probabilities({"ids": ["a", "b"], "maps": [torch.full((3, *shape), value, dtype=torch.float16)] * 2},
                                   checkpoint)
    return Member(trial_id, 0.5, {}, checkpoint / "checkpoint.pt", kept)


def test_kept_maps_are_copied_and_mismatched_ones_left_out_by_name(tmp_path):
    good = kept_member(tmp_path, "good", (4, 6), 0.25)
    other_size = kept_member(tmp_path, "other_size", (8, 6), 0.5)  # read at another size than these images
    none = Member("none", 0.4, {}, tmp_path / "none.pt")
    messages = []
    usable = import_val_probabilities([good, other_size, none], {"a": (4, 6), "b": (4, 6)}, tmp_path / "store",
                                      messages.append)
    assert usable == [good]
    assert messages == ["  other_size: its kept validation maps do not match the images ['a', 'b']; left out"]
    stack = ProbabilityStore(tmp_path / "store", ["good"]).stack("b")
    assert stack.shape == (1, 3, 4, 6) and np.all(stack == 0.25)
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["good"]


@pytest.mark.parametrize("options, message", [
    (["--bootstrap", "50"], "option --bootstrap: 50 resamples; use at least 100"),
    (["--candidates", "mean,library"], "option --candidates: library needs --select library"),
    (["--select", "library", "--candidates", "median"], "option --candidates: unknown \\['median'\\]"),
])
def test_bad_options_are_refused_before_the_experiment_is_read(tmp_path, options, message):
    with pytest.raises(SystemExit, match=message):
        ensemble_main([str(tmp_path / "no_such_experiment"), *options])
