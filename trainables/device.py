"""Where and how a trial computes: the device, mixed precision and memory format.

On a GPU both speed-ups are on unless switched off (search config `mixed_precision`, `channels_last`):
autocast to bfloat16 where the card supports it (Ampere and newer), else float16 with loss scaling; the
model and each batch in channels-last layout, which lets cuDNN pick its faster NHWC convolutions under
mixed precision. Losses and metrics are always computed in float32. A trial sharing a GPU with others
(gpu_fraction < 1) is held to its share of the GPU's memory, so one trial's peak cannot crash its
neighbours with out-of-memory errors (Ray's fractional GPUs are bookkeeping only).
On a CPU a trial trains in float32 with the default layout unless a test asks for more.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Compute:
    device: torch.device
    amp_dtype: torch.dtype | None = None
    """Autocast dtype of forward passes; None trains in float32."""
    channels_last: bool = False

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def scaler(self) -> torch.amp.GradScaler | None:
        """float16 gradients underflow without loss scaling; bfloat16 and float32 need none."""
        return torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def model(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


def trial_compute(mixed_precision: bool = True, channels_last: bool = True, gpu_fraction: float = 1.0) -> Compute:
    """The GPU with the speed-ups asked for when there is one, else the CPU in float32."""
    if not torch.cuda.is_available():
        return Compute(torch.device("cpu"))
    device = torch.device("cuda")
    if 0 < gpu_fraction < 1:
        torch.cuda.set_per_process_memory_fraction(gpu_fraction, device)
    amp = None
    if mixed_precision:
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return Compute(device, amp, channels_last)
