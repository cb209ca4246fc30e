"""keep_val_probabilities: the best epoch's class probabilities on the validation images, kept beside its checkpoint."""

from pathlib import Path

import numpy as np
import pytest
import torch

from search.config import load_config
from search.fixed import fixed_trial_params
from segtune import names
from segtune.data import make_splits, make_synthetic
from segtune.data.dataset import to_tensor
import trainables.trainable as trainable
from trainables import TrialConfig, load_model, predict_logits, run_trial
from trainables.val_probabilities import VAL_PROBABILITIES, read_val_probabilities, write_val_probabilities


@pytest.fixture(scope="module")
def data_and_splits():
    data = make_synthetic(count=12)
    return data, make_splits(data, 0.25, 0.0, seed=0)


def run(data, splits, **overrides):
    """(result, checkpoint state) of each epoch of a tiny trial."""
    values = dict(num_classes=4, max_epochs=3, steps_per_epoch=1, batch_size=4, seed=1)
    reports = []
    run_trial(TrialConfig(**{**values, **overrides}), data, splits, lambda result, state: reports.append((result, state)))
    return reports


def test_maps_are_kept_on_epochs_that_match_the_best_so_far_only(data_and_splits, monkeypatch):
    data, splits = data_and_splits
    # val mIoU 0.3, 0.2, 0.3: epoch 2 is worse than epoch 1 (nothing kept), epoch 3 ties the best (kept:
    # Ray may call either tied checkpoint the best, so both must have the maps)
    scores, real_evaluate = iter([0.3, 0.2, 0.3]), trainable.evaluate
    monkeypatch.setattr(trainable, "evaluate", lambda *a, **k: {**real_evaluate(*a, **k), names.VAL_MIOU: next(scores)})
    reports = run(data, splits)
    kept = [state[VAL_PROBABILITIES] is not None for _, state in reports]
    assert kept == [True, False, True]
    first = reports[0][1][VAL_PROBABILITIES]
    assert first["ids"] == splits["val"]
    index = data.index_of()
    for image_id, probs in zip(first["ids"], first["maps"]):
        assert probs.dtype == torch.float16
        assert probs.shape == (4, *data.masks[index[image_id]].shape)
        assert torch.allclose(probs.float().sum(0), torch.ones(probs.shape[1:]), atol=5e-3)


def test_keep_val_probabilities_false_keeps_none(data_and_splits):
    data, splits = data_and_splits
    reports = run(data, splits, keep_val_probabilities=False, max_epochs=1)
    assert reports[0][1][VAL_PROBABILITIES] is None


def test_the_checkpoint_folder_gets_the_maps_as_a_file_of_their_own(data_and_splits, tmp_path, monkeypatch):
    data, splits = data_and_splits
    _, state = run(data, splits, max_epochs=1)[0]
    saved = {}

    def report(result, checkpoint):
        folder = checkpoint.path
        saved["files"] = sorted(p.name for p in Path(folder).iterdir())
        saved["checkpoint"] = torch.load(f"{folder}/{names.CHECKPOINT_FILE}", weights_only=True)
        saved["maps"] = read_val_probabilities(f"{folder}/{names.VAL_PROBABILITIES_FILE}")

    monkeypatch.setattr(trainable.tune, "report", report)
    monkeypatch.setattr(trainable.ray, "get_runtime_context", lambda: type("C", (), {"get_node_id": lambda s: "n"})())
    trainable._report_to_tune({}, state)
    assert saved["files"] == [names.CHECKPOINT_FILE, names.VAL_PROBABILITIES_FILE]
    assert VAL_PROBABILITIES not in saved["checkpoint"]  # loading a model never reads the maps
    assert list(saved["maps"]) == splits["val"]
    assert np.array_equal(saved["maps"][splits["val"][0]], state[VAL_PROBABILITIES]["maps"][0].numpy())
    # the maps are what the checkpoint's model predicts on those images
    torch.save(saved["checkpoint"], tmp_path / names.CHECKPOINT_FILE)
    model, cfg = load_model(tmp_path / names.CHECKPOINT_FILE)
    image = data.images[data.index_of()[splits["val"][1]]]
    expected = torch.softmax(predict_logits(model, to_tensor(image, cfg.mean, cfg.std)[None]), 1)[0]
    assert np.allclose(saved["maps"][splits["val"][1]], expected.detach().numpy(), atol=1e-3)


def test_written_maps_read_back_by_image_id(tmp_path):
    maps = [torch.full((2, 3, 4), 0.25, dtype=torch.float16), torch.zeros((2, 5, 6), dtype=torch.float16)]
    write_val_probabilities({"ids": ["b", "a"], "maps": maps}, tmp_path)
    read = read_val_probabilities(tmp_path / names.VAL_PROBABILITIES_FILE)
    assert list(read) == ["b", "a"] and read["a"].shape == (2, 5, 6) and read["b"].dtype == np.float16


def test_the_option_is_validated_and_reaches_every_trial():
    with pytest.raises(ValueError, match="keep_val_probabilities 'no' must be true or false"):
        TrialConfig(keep_val_probabilities="no")
    with pytest.raises(ValueError, match="option keep_val_probabilities: 'no' is not true or false"):
        load_config(None, {"keep_val_probabilities": "no"})
    data = make_synthetic(count=8)
    splits = make_splits(data, 0.25, 0.0, seed=0)
    fixed = fixed_trial_params(load_config(None, {"keep_val_probabilities": False}), data, splits).as_dict()
    assert TrialConfig.from_dict(fixed).keep_val_probabilities is False
    assert TrialConfig().keep_val_probabilities is True and load_config(None, {}).keep_val_probabilities is True
