"""Mixed precision and channels-last: chosen per device, switchable, and the training step they change.

There is no GPU here, so the choice on a GPU is checked with torch.cuda's answers replaced, and the
training step runs on the CPU with the same autocast dtypes (CPU autocast supports bf16 and fp16).
"""

import pytest
import torch
from torch.utils.data import DataLoader

from search import load_config
from search.fixed import fixed_trial_params
from segtune.data import CropDataset, WholeImageDataset, make_splits, make_synthetic
from trainables import TrialConfig, build_model
from trainables.device import Compute, trial_compute
from trainables.loop import evaluate, train_epoch
from trainables.losses import build_loss

CPU = torch.device("cpu")


@pytest.fixture
def fake_gpu(monkeypatch):
    """torch.cuda answering as a machine with one GPU would; records the memory cap asked for."""
    answers = {"bf16": True, "fraction": None}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: answers["bf16"])
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda fraction, device=None: answers.update(fraction=fraction))
    return answers


def test_a_cpu_trial_trains_in_float32_nchw_whatever_the_switches(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert trial_compute(True, True, 0.25) == Compute(CPU, None, False)


def test_on_a_gpu_bf16_and_channels_last_are_on_by_default_and_can_be_switched_off(fake_gpu):
    assert trial_compute() == Compute(torch.device("cuda"), torch.bfloat16, True)
    assert fake_gpu["fraction"] is None  # a whole GPU is not capped
    assert trial_compute(mixed_precision=False, channels_last=False) == Compute(torch.device("cuda"), None, False)
    fake_gpu["bf16"] = False  # a card without bf16 (before Ampere) gets fp16, which needs loss scaling
    older = trial_compute()
    assert older.amp_dtype == torch.float16 and isinstance(older.scaler(), torch.amp.GradScaler)


def test_a_packed_trial_is_held_to_its_share_of_gpu_memory(fake_gpu):
    trial_compute(gpu_fraction=0.25)
    assert fake_gpu["fraction"] == 0.25


@pytest.fixture(scope="module")
def tiny():
    data = make_synthetic(count=12)
    splits = make_splits(data, 0.25, 0.0, seed=0)
    cfg = TrialConfig(num_classes=4, max_epochs=1, batch_size=4, lr=3e-3, seed=1)
    return cfg, data, splits


def train_loader(cfg, data, splits):
    return DataLoader(CropDataset(data, splits["train"], cfg.crop, cfg.mean, cfg.std, 0, 255), batch_size=4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_runs_the_forward_pass_in_half_precision_and_the_loss_in_float32(tiny, dtype):
    cfg, data, splits = tiny
    compute = Compute(CPU, dtype, channels_last=True)
    torch.manual_seed(0)
    model = compute.model(build_model(cfg))
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = {}
    first_conv.register_forward_hook(lambda module, inputs, output: seen.update(
        input_channels_last=inputs[0].is_contiguous(memory_format=torch.channels_last), output_dtype=output.dtype))
    loss_dtypes = []
    ce = build_loss("cross_entropy", 255)

    def loss(logits, masks):
        loss_dtypes.append(logits.dtype)
        return ce(logits, masks)

    before = {k: v.clone() for k, v in model.state_dict().items()}
    mean_loss = train_epoch(model, train_loader(cfg, data, splits), loss, torch.optim.Adam(model.parameters(), 3e-3),
                            compute)
    assert seen == {"input_channels_last": True, "output_dtype": dtype}
    assert set(loss_dtypes) == {torch.float32}
    assert torch.isfinite(torch.tensor(mean_loss))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # the optimiser stepped
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32 (autocast, not .half())


@pytest.mark.slow  # two training passes in float16, which CPUs emulate slowly
def test_fp16_gradients_are_unscaled_before_clipping(tiny, monkeypatch):
    """GradScaler multiplies the loss by 65536; clipping the scaled gradients would clip them all to nothing."""
    cfg, data, splits = tiny
    norms, clip = [], torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm: norms.append(clip(params, max_norm)))
    compute = Compute(CPU, torch.float16)
    torch.manual_seed(0)
    model = compute.model(build_model(cfg))
    train_epoch(model, train_loader(cfg, data, splits), build_loss("cross_entropy", 255),
                torch.optim.SGD(model.parameters(), 0.01), compute, max_steps=2, grad_clip=1e6)
    reference = Compute(CPU)
    torch.manual_seed(0)
    model32 = reference.model(build_model(cfg))
    train_epoch(model32, train_loader(cfg, data, splits), build_loss("cross_entropy", 255),
                torch.optim.SGD(model32.parameters(), 0.01), reference, max_steps=1, grad_clip=1e6)
    fp32_norm = norms.pop()
    assert len(norms) == 2 and float(norms[0]) == pytest.approx(float(fp32_norm), rel=0.05)


def test_bf16_evaluation_scores_like_float32(tiny):
    cfg, data, splits = tiny
    torch.manual_seed(0)
    model = build_model(cfg)
    train_epoch(model, train_loader(cfg, data, splits), build_loss("cross_entropy", 255),
                torch.optim.Adam(model.parameters(), 3e-3), Compute(CPU))
    loader = DataLoader(WholeImageDataset(data, splits["val"], cfg.mean, cfg.std), batch_size=1)
    loss = build_loss("cross_entropy", 255)
    full = evaluate(model, loader, loss, cfg, Compute(CPU))
    half = evaluate(model.to(memory_format=torch.channels_last), loader, loss, cfg, Compute(CPU, torch.bfloat16, True))
    assert half["val_miou"] == pytest.approx(full["val_miou"], abs=0.02)
    assert half["val_loss"] == pytest.approx(full["val_loss"], rel=0.05)


def test_the_search_config_sets_compute_and_loader_workers_in_one_place(tiny):
    _, data, splits = tiny
    cfg = load_config(None, {"cpus_per_trial": 3, "gpus_per_trial": 0.25, "mixed_precision": False})
    fixed = fixed_trial_params(cfg, data, splits)
    assert (fixed.num_workers, fixed.gpu_fraction, fixed.mixed_precision, fixed.channels_last) == (2, 0.25, False, True)
    assert fixed_trial_params(load_config(None, {}), data, splits).gpu_fraction == 1.0
    TrialConfig.from_dict(fixed.as_dict())  # every fixed key is a trial field
    with pytest.raises(ValueError, match="num_workers.*cpus_per_trial >= 3"):
        load_config(None, {"cpus_per_trial": 1, "num_workers": 2})
