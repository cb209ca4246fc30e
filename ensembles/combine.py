"""How an ensemble turns its members' class probabilities into one map: the candidate combiners.

Every combiner maps member probabilities (B, M, K, H, W) to class probabilities (B, K, H, W):
- WeightedMean: best single (one-hot weights), mean of probabilities (uniform), greedy selection
  with replacement (Caruana et al. 2004: weights = how often each member was picked);
- PixelLogistic: a stacked multinomial logistic regression per pixel (a 1x1 convolution over the
  members' log-probabilities), started at the geometric mean of the members;
- ContextHead: a small convolutional head with 3x3 context, added as a residual to that start, so
  an unfitted head is the geometric mean and fitting only moves it as far as the data supports.

EnsembleModule wraps the members and a combiner into the one network that is exported; a member trained on other
normalisation statistics than the ensemble's reads its input through Renormalised, one trained at a scale below 1
(a share of the size the search read images at, which is the ensemble's input) through Rescaled. A member refitted on
K folds (`segtune ensemble --refit-folds`) is its fold models averaged, nnU-Net's way, through FoldAverage; a
combiner other than a weighted mean, fitted on one fold model's maps per image (out-of-fold), is then applied to each
fold's models and its K outputs averaged (PerFold), since the fold averages are smoother than what it was fitted on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segtune.tiling import TILE_MULTIPLE

EPSILON = 1e-6
"""Probabilities are clamped to this before taking logs (float16 maps hold exact zeros)."""


class WeightedMean(nn.Module):
    def __init__(self, weights):
        super().__init__()
        weights = torch.as_tensor(weights, dtype=torch.float32)
        self.register_buffer("weights", weights / weights.sum())

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        return (probs * self.weights.view(1, -1, 1, 1, 1)).sum(1)


class PixelLogistic(nn.Module):
    def __init__(self, members: int, classes: int):
        super().__init__()
        self.members, self.classes = members, classes
        self.linear = nn.Conv2d(members * classes, classes, 1)
        with torch.no_grad():  # start as the geometric mean: class k's logit = mean over members of log p_mk
            self.linear.weight.zero_()
            self.linear.bias.zero_()
            for member in range(members):
                for k in range(classes):
                    self.linear.weight[k, member * classes + k] = 1.0 / members

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.linear(_log_features(probs)), 1)


class ContextHead(nn.Module):
    def __init__(self, members: int, classes: int, hidden: int = 16):
        super().__init__()
        self.members, self.classes = members, classes
        self.head = nn.Sequential(nn.Conv2d(members * classes, hidden, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(hidden, classes, 1))
        nn.init.zeros_(self.head[2].weight)
        nn.init.zeros_(self.head[2].bias)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        features = _log_features(probs)
        base = features.view(probs.shape).mean(1)
        return F.softmax(base + self.head(features), 1)


def _log_features(probs: torch.Tensor) -> torch.Tensor:
    """(B, M, K, H, W) probabilities -> (B, M*K, H, W) log-probabilities."""
    return torch.log(probs.clamp_min(EPSILON)).flatten(1, 2)


def build_combiner(kind: str, members: int, classes: int, weights=None) -> nn.Module:
    if kind == "weighted_mean":
        return WeightedMean(weights if weights is not None else [1.0] * members)
    if kind == "pixel_logistic":
        return PixelLogistic(members, classes)
    if kind == "context_head":
        return ContextHead(members, classes)
    raise ValueError(f"unknown combiner {kind!r}; choose weighted_mean, pixel_logistic or context_head")


class EnsembleModule(nn.Module):
    """Images on the 0..255 scale (B, C, H, W), H and W multiples of 32 -> class probabilities (B, K, H, W).

    Normalisation is inside, so an exported bundle needs nothing but the image. With a PerFold combiner every member
    is a FoldAverage and the combiner takes their fold models' maps fold by fold.
    """

    def __init__(self, members: list[nn.Module], combiner: nn.Module, mean, std):
        super().__init__()
        if isinstance(combiner, PerFold) and not _same_fold_models(members):
            raise ValueError("EnsembleModule: a combiner applied per fold (PerFold) needs every member made of the same "
                             "number of fold models (FoldAverage); give members of one network the combiner itself")
        self.members = nn.ModuleList(members)
        self.combiner = combiner
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.combined(images)[0]

    def combined(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ensemble's class probabilities (B, K, H, W) and each member's (B, M, K, H, W): a member made of fold
        models gives their mean, whichever way the combiner takes them."""
        x = (images - self.mean) / self.std
        if isinstance(self.combiner, PerFold):
            folds = torch.stack([member.fold_probabilities(x) for member in self.members], 2)  # (B, F, M, K, H, W)
            return self.combiner(folds), folds.mean(1)
        probs = torch.stack([F.softmax(member(x), 1) for member in self.members], 1)
        return self.combiner(probs), probs


def _same_fold_models(members: list[nn.Module]) -> bool:
    """Whether every member is made of fold models (FoldAverage), as many each."""
    return all(isinstance(m, FoldAverage) for m in members) and len({len(m.networks) for m in members}) == 1


class Renormalised(nn.Module):
    """A member trained on other normalisation statistics than the ensemble's (it started from pretrained weights
    with their own mean/std, another member did not): the ensemble's normalised input x = (image - M) / S becomes
    the member's own (image - m) / s = x * S / s + (M - m) / s."""

    def __init__(self, member: nn.Module, member_mean, member_std, mean, std):
        super().__init__()
        self.member = member
        own_mean, own_std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in (member_mean, member_std))
        shared_mean, shared_std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in (mean, std))
        self.register_buffer("scale", shared_std / own_std)
        self.register_buffer("shift", (shared_mean - own_mean) / own_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.member(x * self.scale + self.shift)


def reading_as_trained(member: nn.Module, member_mean, member_std, mean, std) -> nn.Module:
    """The member as an ensemble normalising with (mean, std) must call it: itself where its own statistics are
    those, else Renormalised."""
    if list(member_mean) == list(mean) and list(member_std) == list(std):
        return member
    return Renormalised(member, member_mean, member_std, mean, std)


class Rescaled(nn.Module):
    """A member trained at a scale below 1 (a search's `scale`, trainables/scale.py): it sees the ensemble's input, at
    the size the search read images at, shrunk by `factor` (bilinear, halved in steps while the factor left is at
    most 0.5, so each step averages 2x2 pixels and a quarter size averages 4x4 instead of sampling them),
    edge-padded to a multiple of 32, and its logits are resized back to the input's size (bilinear), as a trial's
    validation scores them; so the combiner works at the size it was fitted at. Every size is taken from the
    input, so an exported network keeps its height and width free."""

    def __init__(self, member: nn.Module, factor: float):
        super().__init__()
        if not 0 < factor < 1:
            raise ValueError(f"Rescaled: factor {factor} must be in (0, 1); a member at scale 1 needs none")
        self.member, self.factor = member, float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        left = self.factor
        while left <= 0.5:
            x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False, recompute_scale_factor=False)
            left *= 2
        if left < 1:
            x = F.interpolate(x, scale_factor=left, mode="bilinear", align_corners=False, recompute_scale_factor=False)
        small_h, small_w = x.shape[-2:]
        pad_h, pad_w = (TILE_MULTIPLE - small_h % TILE_MULTIPLE) % TILE_MULTIPLE, \
            (TILE_MULTIPLE - small_w % TILE_MULTIPLE) % TILE_MULTIPLE
        logits = self.member(F.pad(x, (0, pad_w, 0, pad_h), mode="replicate"))[..., :small_h, :small_w]
        return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)


class FoldAverage(nn.Module):
    """One member made of several networks (a config's fold models): its output is the log of their mean class
    probabilities, so the softmax EnsembleModule takes of it gives that mean back (softmax(log p) = p when p sums to
    1) and a weighted mean and the disagreement output see one member; a PerFold combiner reads each network's maps
    (fold_probabilities) instead."""

    def __init__(self, networks: list[nn.Module]):
        super().__init__()
        self.networks = nn.ModuleList(networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.fold_probabilities(x).mean(1).clamp_min(EPSILON * EPSILON))

    def fold_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Each network's class probabilities, (B, F, K, H, W) in fold order: what PerFold combines fold by fold."""
        return torch.stack([F.softmax(network(x), 1) for network in self.networks], 1)


FOLD_AVERAGE, PER_FOLD = "fold_average", "per_fold"
"""How a combiner meets members made of fold models: on each member's fold average, or per fold (PerFold)."""


class PerFold(nn.Module):
    """A combiner applied to each fold's members on their own, its outputs averaged: (B, F, M, K, H, W) probabilities
    (fold f: every config's fold-f model, which did not train on fold f's images) -> mean over f of combiner(fold f's
    (B, M, K, H, W)). A combiner fitted on out-of-fold maps saw one fold model's probabilities per image, never an
    average of K, which is smoother; applied to the fold averages, a stacker meets inputs unlike those it was fitted
    on (terrain tiles: context_head cv mIoU 0.32, test 0.22 that way, 0.24 per fold)."""

    def __init__(self, combiner: nn.Module):
        super().__init__()
        self.combiner = combiner

    def forward(self, folds: torch.Tensor) -> torch.Tensor:
        # the fold count is fixed by the members, so a traced network unrolls this loop
        return torch.stack([self.combiner(folds[:, f]) for f in range(folds.shape[1])]).mean(0)


def fold_form(combiner: nn.Module) -> str:
    """PER_FOLD, or FOLD_AVERAGE for a weighted mean: its weighted mean of the members' fold averages is the fold
    average of its weighted means (both linear), so one pass over the averages gives the same for less."""
    return FOLD_AVERAGE if isinstance(combiner, WeightedMean) else PER_FOLD


def at_scale(member: nn.Module, scale: float) -> nn.Module:
    """The member, trained at `scale`, as an ensemble whose input is at the size the search read images at must call
    it: itself at scale 1, else Rescaled."""
    return member if scale == 1 else Rescaled(member, scale)
