import pytest
import torch
from torch.utils.data import DataLoader

from segtune import names
from segtune.data import CropDataset, make_splits, make_synthetic
from trainables import TrialConfig, build_loss, build_model, load_model, run_trial
from trainables.device import Compute
from trainables.loop import train_epoch
from trainables.trainable import CHECKPOINT_FILE


@pytest.fixture(scope="module")
def data_and_splits():
    data = make_synthetic(count=16)
    return data, make_splits(data, 0.25, 0.0, seed=0)


def tiny_config(**overrides) -> TrialConfig:
    values = dict(num_classes=4, class_names=("background", "plant", "stem", "rare"), max_epochs=2,
                  steps_per_epoch=2, batch_size=4, lr=3e-3, seed=1)
    return TrialConfig(**{**values, **overrides})


def run(cfg, data, splits, state=None):
    reports = []
    run_trial(cfg, data, splits, lambda result, checkpoint: reports.append((result, checkpoint)), state)
    return reports


def test_from_dict_refuses_unknown_keys_and_names_bad_options():
    with pytest.raises(KeyError, match="learning_rate"):
        TrialConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="encoder_depth"):
        TrialConfig(encoder_depth=7)
    with pytest.raises(ValueError, match="crop"):
        TrialConfig(encoder_depth=4, crop=(40, 40))


@pytest.mark.parametrize("architecture", ["Linknet", "MAnet"])
def test_architectures_no_space_samples_are_refused_naming_the_accepted_ones(architecture):
    with pytest.raises(ValueError, match=f"architecture '{architecture}' not in .*'Unet', 'UnetPlusPlus', 'FPN'"):
        TrialConfig(architecture=architecture)


def test_trial_reports_every_epoch_with_all_metrics(data_and_splits):
    data, splits = data_and_splits
    reports = run(tiny_config(), data, splits)
    assert [r[names.EPOCH] for r, _ in reports] == [1, 2]
    first = reports[0][0]
    for key in (names.VAL_MIOU, names.VAL_LOSS, names.VAL_PIXEL_ACCURACY, names.TRAIN_LOSS, "val_iou_rare"):
        assert key in first
    assert 0.0 <= first[names.VAL_MIOU] <= 1.0
    assert reports[1][0][names.BEST_VAL_MIOU] == max(r[names.VAL_MIOU] for r, _ in reports)


def test_resumed_trial_continues_exactly_where_it_stopped(data_and_splits):
    data, splits = data_and_splits
    straight = run(tiny_config(), data, splits)
    first_epoch_state = run(tiny_config(max_epochs=1), data, splits)[-1][1]
    resumed = run(tiny_config(), data, splits, state=first_epoch_state)
    assert [r[names.EPOCH] for r, _ in resumed] == [2]
    assert resumed[0][0][names.VAL_MIOU] == pytest.approx(straight[1][0][names.VAL_MIOU], abs=1e-6)
    assert resumed[0][0][names.TRAIN_LOSS] == pytest.approx(straight[1][0][names.TRAIN_LOSS], abs=1e-6)


def test_same_seed_same_result_on_cpu(data_and_splits):
    data, splits = data_and_splits
    a, b = run(tiny_config(max_epochs=1), data, splits), run(tiny_config(max_epochs=1), data, splits)
    assert a[0][0][names.VAL_MIOU] == b[0][0][names.VAL_MIOU]


def test_checkpoint_rebuilds_model_that_predicts(tmp_path, data_and_splits):
    data, splits = data_and_splits
    state = run(tiny_config(max_epochs=1), data, splits)[-1][1]
    torch.save(state, tmp_path / CHECKPOINT_FILE)
    model, cfg = load_model(tmp_path / CHECKPOINT_FILE)
    assert cfg == tiny_config(max_epochs=1)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 4, 64, 64)


def test_non_finite_loss_stops_the_trial_with_the_reason(data_and_splits):
    data, splits = data_and_splits
    cfg = tiny_config()
    model = build_model(cfg)
    loader = DataLoader(CropDataset(data, splits["train"], cfg.crop, cfg.mean, cfg.std, 0, 255), batch_size=4)
    nan_loss = lambda logits, target: logits.sum() * float("nan")  # noqa: E731
    with pytest.raises(FloatingPointError, match="lower lr"):
        train_epoch(model, loader, nan_loss, torch.optim.SGD(model.parameters(), lr=0.1), Compute(torch.device("cpu")))


def test_an_epoch_of_max_steps_batches_makes_no_batch_beyond_them(data_and_splits):
    # without a DataLoader worker every batch is cropped (and augmented) when drawn: one drawn past the last step
    # was work thrown away on every epoch of a trial with steps_per_epoch
    data, splits = data_and_splits
    cfg = tiny_config()
    model = build_model(cfg)
    batches = list(DataLoader(CropDataset(data, splits["train"], cfg.crop, cfg.mean, cfg.std, 0, 255), batch_size=4))
    drawn = []

    def loader():
        for batch in batches:  # 12 training images: 3 batches
            drawn.append(batch)
            yield batch

    train_epoch(model, loader(), build_loss("cross_entropy", 255), torch.optim.SGD(model.parameters(), lr=0.1),
                Compute(torch.device("cpu")), max_steps=2)
    assert len(batches) == 3 and len(drawn) == 2


def test_local_encoder_weights_are_loaded_without_download(tmp_path):
    source = build_model(tiny_config(seed=5))
    torch.save(source.encoder.state_dict(), tmp_path / "encoder.pt")
    loaded = build_model(tiny_config(seed=6, encoder_weights=str(tmp_path / "encoder.pt")))
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[key], value)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        build_model(tiny_config(encoder_weights=str(tmp_path / "missing.pt")))


def test_architecture_depth_pairs_that_give_wrong_sizes_are_refused():
    with pytest.raises(ValueError, match="FPN .* encoder_depth 3"):
        build_model(tiny_config(architecture="FPN", encoder_depth=3))


def test_images_smaller_than_the_crop_and_the_network_stride_train_and_score():
    import fakes
    data = fakes.make_segmentation_data([{0, 1}, {0, 2}, {0, 3}] * 4, size=(8, 8))  # padded to 64 crops, 32 to score
    reports = run(tiny_config(max_epochs=1, crop=(64, 64)), data, make_splits(data, 0.25, 0.25, seed=0))
    assert 0.0 <= reports[-1][0][names.VAL_MIOU] <= 1.0
