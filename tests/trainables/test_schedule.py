"""Loss stage, learning-rate schedule and early stopping: hand-worked numbers, then once through run_trial."""

import pytest
import torch

from segtune import names
from segtune.data import make_splits, make_synthetic
from trainables import TrialConfig, run_trial
from trainables import trainable as trainable_module
from trainables.losses import build_loss
from trainables.schedule import MAIN, WARMUP, cosine_warmup_factor, patience_exhausted, stage_of, start_stage


@pytest.mark.parametrize("step, factor", [
    (0, 1 / 3),   # warm-up: (step + 1) / (warmup + 1) = 1/3
    (1, 2 / 3),   # 2/3
    (2, 1.0),     # progress (2 - 2) / (10 - 2) = 0 -> 0.5 (1 + cos 0) = 1
    (6, 0.5),     # progress 4/8 = 0.5 -> 0.5 (1 + cos(pi/2)) = 0.5
    (10, 0.0),    # progress 1 -> 0.5 (1 + cos pi) = 0
])
def test_cosine_warmup_factor(step, factor):
    assert cosine_warmup_factor(step, warmup=2, total=10) == pytest.approx(factor, abs=1e-12)


def test_patience_exhausted():
    # best 0.1 -> 0.2 (reset), then 0.2, 0.2 do not beat it: 2 epochs without gain
    assert patience_exhausted([0.1, 0.2, 0.2, 0.2], patience=2, min_delta=0.0)
    assert not patience_exhausted([0.1, 0.2, 0.2, 0.2], patience=3, min_delta=0.0)
    # min_delta 0.05: 0.12 and 0.13 are not above 0.1 + 0.05 = 0.15 -> 2 epochs without gain
    assert patience_exhausted([0.1, 0.12, 0.13], patience=2, min_delta=0.05)
    assert not patience_exhausted([0.1, 0.12, 0.13], patience=2, min_delta=0.0)
    assert not patience_exhausted([0.5, 0.1, 0.1, 0.1], patience=None, min_delta=0.0)


def test_stage_of_counts_warmup_epochs_from_one():
    cfg = TrialConfig(warmup_epochs=2, max_epochs=4)
    assert [stage_of(cfg, epoch) for epoch in (1, 2, 3, 4)] == [WARMUP, WARMUP, MAIN, MAIN]
    assert stage_of(TrialConfig(), 1) == MAIN  # no warm-up


def make_optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.5)


@pytest.mark.parametrize("scheduler, kind", [
    ("none", type(None)),
    ("plateau", torch.optim.lr_scheduler.ReduceLROnPlateau),
    ("exponential", torch.optim.lr_scheduler.ExponentialLR),
    ("cosine", torch.optim.lr_scheduler.LambdaLR),
])
def test_start_stage_sets_the_stage_lr_and_builds_the_scheduler(scheduler, kind):
    cfg = TrialConfig(warmup_epochs=2, warmup_lr=1e-2, lr=1e-3, scheduler=scheduler, max_epochs=6)
    optimizer = make_optimizer()
    assert start_stage(cfg, optimizer, WARMUP) is None
    assert optimizer.param_groups[0]["lr"] == 1e-2
    built = start_stage(cfg, optimizer, MAIN)
    assert type(built) is kind
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_plateau_scheduler_follows_a_rising_miou():
    # mode 'max': a rising mIoU is progress, so the lr stays; a flat one halves it after patience 2
    cfg = TrialConfig(scheduler="plateau", lr=1e-3)
    optimizer = make_optimizer()
    scheduler = start_stage(cfg, optimizer, MAIN)
    assert scheduler.mode == "max"
    for miou in (0.1, 0.2, 0.3, 0.4, 0.5):
        scheduler.step(miou)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    for _ in range(3):  # 3 epochs at 0.5: patience 2 exceeded -> lr * 0.5
        scheduler.step(0.5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)


def test_cosine_scheduler_starts_its_own_warmup_at_the_main_lr():
    # scheduler_warmup_epochs 2, main epochs 6 - 2 = 4: factors 1/3, 2/3, then cosine from 1
    cfg = TrialConfig(warmup_epochs=2, lr=3e-3, scheduler="cosine", scheduler_warmup_epochs=2, max_epochs=6)
    optimizer = make_optimizer()
    scheduler = start_stage(cfg, optimizer, MAIN)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(3):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    # steps 0..3 with warmup 2, total 4: 1/3, 2/3, 1, 0.5 (1 + cos(pi/2)) = 0.5
    assert lrs == pytest.approx([1e-3, 2e-3, 3e-3, 1.5e-3])


# ---- through the trainable ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_and_splits():
    data = make_synthetic(count=12)
    return data, make_splits(data, 0.25, 0.0, seed=0)


def tiny_config(**overrides) -> TrialConfig:
    values = dict(num_classes=4, class_names=("background", "plant", "stem", "rare"), steps_per_epoch=1,
                  batch_size=4, seed=1)
    return TrialConfig(**{**values, **overrides})


def test_trial_switches_from_cross_entropy_warmup_to_its_loss_at_the_configured_epoch(data_and_splits, monkeypatch):
    data, splits = data_and_splits
    # the loss each epoch trains with, told apart on one fixed input where CE and Dice differ
    torch.manual_seed(0)
    probe_logits, probe_target = torch.randn(1, 4, 4, 4), torch.randint(0, 4, (1, 4, 4))
    cross_entropy = build_loss("cross_entropy", 255)(probe_logits, probe_target).item()
    dice = build_loss("dice", 255)(probe_logits, probe_target).item()
    assert abs(cross_entropy - dice) > 0.1
    used, real_train_epoch = [], trainable_module.train_epoch

    def recording_train_epoch(model, loader, loss_fn, *args, **kwargs):
        used.append(loss_fn(probe_logits, probe_target).item())
        return real_train_epoch(model, loader, loss_fn, *args, **kwargs)

    monkeypatch.setattr(trainable_module, "train_epoch", recording_train_epoch)
    reports = []
    cfg = tiny_config(warmup_epochs=2, warmup_lr=1e-2, lr=1e-3, loss="dice", max_epochs=3)
    run_trial(cfg, data, splits, lambda result, state: reports.append(result))
    assert [r[names.EPOCH] for r in reports] == [1, 2, 3]
    assert [r[names.LOSS_STAGE] for r in reports] == [0, 0, 1]
    assert [r[names.LR] for r in reports] == pytest.approx([1e-2, 1e-2, 1e-3])
    assert used == pytest.approx([cross_entropy, cross_entropy, dice])
    assert [r[names.EARLY_STOPPED] for r in reports] == [0, 0, 0]


def test_trial_stops_itself_once_patience_runs_out(data_and_splits):
    data, splits = data_and_splits
    # min_delta 1.0: no mIoU (<= 1) can beat the first epoch's by more than 1 -> epoch 2 exhausts patience 1
    reports = []
    cfg = tiny_config(early_stop_patience=1, early_stop_min_delta=1.0, max_epochs=4)
    run_trial(cfg, data, splits, lambda result, state: reports.append(result))
    assert [r[names.EPOCH] for r in reports] == [1, 2]
    assert [r[names.EARLY_STOPPED] for r in reports] == [0, 1]
