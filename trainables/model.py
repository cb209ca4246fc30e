"""Build an smp model from a TrialConfig, offline by default, and predict on images of any size."""

from __future__ import annotations

import functools
from pathlib import Path

import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F

from segtune.tiling import TILE_MULTIPLE
from trainables.config import TrialConfig

_LIST_DECODERS = {"Unet", "UnetPlusPlus"}
_INTERPOLATING = {"Unet", "UnetPlusPlus", "FPN"}
_ATTENTION = {"Unet", "UnetPlusPlus"}
_NO_DILATION = ("densenet", "vgg", "tu-densenet", "tu-vgg")
"""Encoder families DeepLabV3Plus cannot dilate (smp refuses them)."""


def is_valid_combination(architecture: str, encoder: str, depth: int) -> bool:
    """The smp combinations that build and return full-size maps (probed on smp 0.6.0)."""
    if architecture == "FPN" and depth != 5:
        return False  # FPN returns 2x or 4x too large maps below depth 5
    return not (architecture == "DeepLabV3Plus" and encoder.startswith(_NO_DILATION))


def encoder_exists(name: str) -> bool:
    """Whether smp builds encoder `name`: one of its own, or tu-<a timm model name>."""
    if name.startswith("tu-"):
        return timm.is_model(name.removeprefix("tu-"))
    return name in smp.encoders.get_encoder_names()


@functools.lru_cache(maxsize=None)
def attention_builds(architecture: str, encoder: str, depth: int) -> bool:
    """Whether smp's scSE decoder attention works here: its squeeze divides channels by 16, so an
    encoder with narrow stages (tu-mobilenetv3_small_050 under UnetPlusPlus) builds a 0-channel conv."""
    try:
        model = smp.create_model(architecture, encoder_name=encoder, encoder_depth=depth, encoder_weights=None,
                                 decoder_channels=decoder_channels(depth), decoder_attention_type="scse")
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, 64, 64))
    except RuntimeError:
        return False
    return True


def decoder_channels(depth: int) -> tuple[int, ...]:
    """One decoder width per encoder stage, halving towards the output: depth 3 -> (64, 32, 16)."""
    return tuple(16 * 2 ** (depth - 1 - i) for i in range(depth))


def build_model(cfg: TrialConfig) -> torch.nn.Module:
    kwargs = dict(encoder_name=cfg.encoder, encoder_depth=cfg.encoder_depth, encoder_weights=None,
                  in_channels=cfg.in_channels, classes=cfg.num_classes)
    if cfg.architecture in _LIST_DECODERS:
        kwargs["decoder_channels"] = decoder_channels(cfg.encoder_depth)
    if cfg.architecture in _INTERPOLATING:
        kwargs["decoder_interpolation"] = cfg.decoder_interpolation
    if cfg.architecture in _ATTENTION and cfg.decoder_attention:
        kwargs["decoder_attention_type"] = "scse"
    model = smp.create_model(cfg.architecture, **kwargs)
    if cfg.head_dropout > 0:
        model.segmentation_head = torch.nn.Sequential(torch.nn.Dropout2d(cfg.head_dropout), model.segmentation_head)
    _check_output_size(model, cfg)
    if cfg.encoder_weights:
        load_encoder_weights(model, cfg.encoder_weights)
    return model


def _check_output_size(model: torch.nn.Module, cfg: TrialConfig) -> None:
    """Some smp architecture/depth pairs build but return maps of another size; refuse them."""
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, cfg.in_channels, 64, 64))
    model.train()
    if out.shape[-2:] != (64, 64):
        raise ValueError(f"{cfg.architecture} with encoder {cfg.encoder} at encoder_depth {cfg.encoder_depth} "
                         f"returns {tuple(out.shape[-2:])} maps for 64x64 input; use another depth or architecture")


def load_encoder_weights(model: torch.nn.Module, path: str) -> None:
    """Load a local encoder state dict (no hub download); a mismatch names the file and the keys."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"encoder_weights: {file} is not a file; pass a local state-dict (.pt/.pth) or null")
    state = torch.load(file, map_location="cpu", weights_only=True)
    state = {k.removeprefix("encoder."): v for k, v in state.items()}
    result = model.encoder.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ValueError(f"encoder_weights: {file} lacks {len(result.missing_keys)} encoder key(s), "
                         f"e.g. {result.missing_keys[:3]}; was it saved from the same encoder?")


def predict_logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logits for images of any size: reflect-pad to a multiple of 32, predict, crop back."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % TILE_MULTIPLE, -width % TILE_MULTIPLE
    # reflection needs the image larger than the padding: an image of 16 px or less is edge-padded instead
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    padded = F.pad(images, (0, pad_w, 0, pad_h), mode=mode) if pad_h or pad_w else images
    return model(padded)[..., :height, :width]
