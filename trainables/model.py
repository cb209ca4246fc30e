"""Build an smp model from a TrialConfig, offline always (named weights come from the search's cache), and predict
on images of any size."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F

from segtune.tiling import TILE_MULTIPLE
from segtune.weights import is_weights_name, weights_of
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
    if cfg.pretrained and cfg.encoder_weights:
        load_encoder_weights(model, encoder_weights_file(cfg))
    return model


def encoder_weights_file(cfg: TrialConfig) -> str:
    """The state-dict file the encoder starts from: encoder_weights itself, or a name's entry in weights_cache."""
    if not is_weights_name(cfg.encoder_weights):
        return cfg.encoder_weights
    return str(weights_of(cfg.encoder, cfg.encoder_weights, cfg.weights_cache).file)


def follow_weights(cfg: TrialConfig) -> TrialConfig:
    """cfg normalising images as named weights were trained (their mean/std; for a grayscale input the average of
    the RGB values, as the summed first convolution sees one grey channel) and recording the file's SHA-256. Every
    trial of an encoder reads images alike, pretrained or not, so ensembles of them share one normalisation. A local
    file says nothing of its statistics: cfg keeps the data's."""
    if not cfg.encoder_weights or not is_weights_name(cfg.encoder_weights):
        return cfg
    try:
        entry = weights_of(cfg.encoder, cfg.encoder_weights, cfg.weights_cache)
    except FileNotFoundError:
        if cfg.pretrained:
            raise
        return cfg  # an encoder the search fetched nothing for (it has no such weights) trains on the data's statistics
    mean, std = entry.mean, entry.std
    if cfg.in_channels == 1:
        mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
    return dataclasses.replace(cfg, mean=tuple(mean), std=tuple(std),
                               encoder_weights_sha256=entry.sha256 if cfg.pretrained else None)


def _check_output_size(model: torch.nn.Module, cfg: TrialConfig) -> None:
    """Some smp architecture/depth pairs build but return maps of another size; refuse them."""
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, cfg.in_channels, 64, 64))
    model.train()
    if out.shape[-2:] != (64, 64):
        raise ValueError(f"{cfg.architecture} with encoder {cfg.encoder} at encoder_depth {cfg.encoder_depth} "
                         f"returns {tuple(out.shape[-2:])} maps for 64x64 input; use another depth or architecture")


def started_from(cfg: TrialConfig) -> dict:
    """Which weights the encoder started from, as checkpoints and bundle manifests record it: a weights name with
    the SHA-256 of its cached file, a local file's path (sha256 null), or null for random weights."""
    weights = cfg.encoder_weights if cfg.pretrained else None
    return {"encoder": cfg.encoder, "encoder_weights": weights,
            "sha256": cfg.encoder_weights_sha256 if weights and is_weights_name(weights) else None}


def load_encoder_weights(model: torch.nn.Module, path: str) -> None:
    """Load a local encoder state dict (no hub download); a mismatch names the file and the keys. Weights of an RGB
    first convolution are adapted to a grayscale model as timm and smp do (summed over the input channels)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"encoder_weights: {file} is not a file; pass a local state-dict (.pt/.pth) or null")
    state = torch.load(file, map_location="cpu", weights_only=True)
    state = {k.removeprefix("encoder."): v for k, v in state.items()}
    own = model.encoder.state_dict()
    missing = [key for key in own if key not in state]
    if missing:
        raise ValueError(f"encoder_weights: {file} lacks {len(missing)} encoder key(s), "
                         f"e.g. {missing[:3]}; was it saved from the same encoder?")
    state = {k: _adapted(k, v, own[k], file) for k, v in state.items() if k in own}
    model.encoder.load_state_dict(state)


def _adapted(key: str, value: torch.Tensor, own: torch.Tensor, file: Path) -> torch.Tensor:
    """value shaped as the model's own tensor: an RGB first convolution adapted to one grey channel, any other
    mismatch refused."""
    if value.shape == own.shape:
        return value
    rgb_to_grey = value.ndim == own.ndim == 4 and (value.shape[1], own.shape[1]) == (3, 1)
    if rgb_to_grey and (value.shape[0], *value.shape[2:]) == (own.shape[0], *own.shape[2:]):
        from timm.models import adapt_input_conv
        return adapt_input_conv(own.shape[1], value).to(value.dtype)
    raise ValueError(f"encoder_weights: {file} holds {key} of shape {tuple(value.shape)} but the encoder's is "
                     f"{tuple(own.shape)}; was it saved from the same encoder?")


def predict_logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logits for images of any size: reflect-pad to a multiple of 32, predict, crop back."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % TILE_MULTIPLE, -width % TILE_MULTIPLE
    # reflection needs the image larger than the padding: an image of 16 px or less is edge-padded instead
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    padded = F.pad(images, (0, pad_w, 0, pad_h), mode=mode) if pad_h or pad_w else images
    return model(padded)[..., :height, :width]
