"""Attention maps of vision transformers: every layer's and head's class-token attention, and attention rollout.

Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", 2020, Section 3,
https://arxiv.org/abs/2005.00928) follows attention through the layers: each layer's attention, heads fused,
gets the identity added for the residual connection (0.5 * A + 0.5 * I) and its rows re-normalised, and the
layers are multiplied, rollout_l = A_l @ rollout_{l-1}. The class token's row of the rollout says how much
each patch flowed into it. Max/min head fusion and discarding the lowest attentions follow jacobgil's
vit-explain (https://github.com/jacobgil/vit-explain).

Any model fits whose `output_attentions=True` gives a tuple of (batch, heads, tokens, tokens) tensors, with
the class token first and the grid_h * grid_w patch tokens last, row-major: hubformers' ViT, CLIP's vision tower.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .checks import require_probability

_FUSE_HEADS = {
    "mean": lambda attention: attention.mean(dim=1),
    "max": lambda attention: attention.amax(dim=1),
    "min": lambda attention: attention.amin(dim=1),
}
HEAD_FUSIONS = tuple(_FUSE_HEADS)


def fuse_heads(attention: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """(batch, heads, tokens, tokens) -> (batch, tokens, tokens): the mean, max or min over the heads."""
    if head_fusion not in _FUSE_HEADS:
        raise ValueError(f"`head_fusion` must be one of {HEAD_FUSIONS}, got {head_fusion!r}.")
    return _FUSE_HEADS[head_fusion](attention)


def discard_lowest(attention: torch.Tensor, discard_ratio: float) -> torch.Tensor:
    """Zero the lowest `discard_ratio` share of each (tokens, tokens) map, but never the class token's
    attention to itself, as vit-explain does (which there only reaches the first image of a batch)."""
    flat = attention.flatten(1)
    lowest = flat.topk(int(flat.shape[1] * discard_ratio), dim=1, largest=False).indices
    drop = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, lowest, True)
    drop[:, 0] = False  # flat index 0 is (class token, class token)
    return flat.masked_fill(drop, 0.0).view_as(attention)


def add_residual(attention: torch.Tensor) -> torch.Tensor:
    """0.5 * A + 0.5 * I with rows re-normalised: the residual connection carries each token on as it is.
    The re-normalisation matters after max/min fusion or discarding, whose rows no longer sum to 1."""
    identity = torch.eye(attention.shape[-1], dtype=attention.dtype, device=attention.device)
    mixed = 0.5 * attention + 0.5 * identity
    return mixed / mixed.sum(dim=-1, keepdim=True)


def check_attentions(attentions: Sequence[torch.Tensor]) -> None:
    """One or more (batch, heads, tokens, tokens) tensors of the same shape."""
    if not attentions:
        raise ValueError("`attentions` is empty: run the model with `output_attentions=True`.")
    shape = attentions[0].shape
    if len(shape) != 4 or shape[-1] != shape[-2]:
        raise ValueError(f"each attention must have shape (batch, heads, tokens, tokens), got {tuple(shape)}.")
    if any(attention.shape != shape for attention in attentions):
        raise ValueError(f"all layers' attentions must have one shape, got {[tuple(a.shape) for a in attentions]}.")


def attention_rollout(
    attentions: Sequence[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0
) -> torch.Tensor:
    """The (batch, tokens, tokens) attention rollout of per-layer (batch, heads, tokens, tokens) attentions,
    first layer first. Row i says how much each input token flowed into token i at the last layer."""
    check_attentions(attentions)
    require_probability(discard_ratio=discard_ratio)
    rollout = None
    for attention in attentions:
        # float32: a product of many half-precision layers loses the small attentions
        layer = add_residual(discard_lowest(fuse_heads(attention.float(), head_fusion), discard_ratio))
        rollout = layer if rollout is None else layer @ rollout
    return rollout


def class_token_maps(attention, grid: tuple[int, int]):
    """(..., tokens, tokens) -> (..., grid_h, grid_w): the class token's (row 0) attention to each patch
    (the last grid_h * grid_w tokens). Takes a tensor or an array and returns the same kind."""
    grid_h, grid_w = grid
    num_patches = grid_h * grid_w
    if attention.shape[-1] < num_patches + 1:
        raise ValueError(
            f"{attention.shape[-1]} tokens can't hold a class token and a {grid_h}x{grid_w} grid of patches."
        )
    return attention[..., 0, -num_patches:].reshape(*attention.shape[:-2], grid_h, grid_w)


def stack_layers(attentions: Sequence[torch.Tensor]) -> np.ndarray:
    """Per-layer (batch, heads, tokens, tokens) tensors -> one (batch, layers, heads, tokens, tokens) array."""
    check_attentions(attentions)
    return torch.stack([attention.detach().float().cpu() for attention in attentions], dim=1).numpy()


def layer_head_maps(attentions: Sequence[torch.Tensor], grid: tuple[int, int]) -> np.ndarray:
    """Every layer's and head's class-token map, (batch, layers, heads, grid_h, grid_w)."""
    return class_token_maps(stack_layers(attentions), grid)


def rollout_maps(
    attentions: Sequence[torch.Tensor], grid: tuple[int, int], head_fusion: str = "mean", discard_ratio: float = 0.0
) -> np.ndarray:
    """The class token's row of the rollout over the patches, (batch, grid_h, grid_w)."""
    rollout = attention_rollout(attentions, head_fusion, discard_ratio)
    return class_token_maps(rollout, grid).detach().cpu().numpy()


def patch_grid(config, pixel_values: torch.Tensor) -> tuple[int, int]:
    """Patches along (height, width) of `pixel_values` for a config with a `patch_size` (int or pair)."""
    patch_size = config.patch_size
    patch_h, patch_w = patch_size if isinstance(patch_size, (list, tuple)) else (patch_size, patch_size)
    return pixel_values.shape[-2] // patch_h, pixel_values.shape[-1] // patch_w


@dataclass
class AttentionMaps:
    """A batch's attention maps as arrays.

    per_layer: (batch, layers, heads, tokens, tokens) attention probabilities.
    cls_maps: (batch, layers, heads, grid_h, grid_w) the class token's attention to each patch.
    rollout: (batch, tokens, tokens) attention rollout.
    rollout_map: (batch, grid_h, grid_w) the class token's row of the rollout over the patches.
    grid: (grid_h, grid_w) patches along height and width.
    """

    per_layer: np.ndarray
    cls_maps: np.ndarray
    rollout: np.ndarray
    rollout_map: np.ndarray
    grid: tuple[int, int]

    @classmethod
    def from_attentions(
        cls,
        attentions: Sequence[torch.Tensor],
        grid: tuple[int, int],
        head_fusion: str = "mean",
        discard_ratio: float = 0.0,
    ) -> "AttentionMaps":
        per_layer = stack_layers(attentions)
        rollout = attention_rollout(attentions, head_fusion, discard_ratio).cpu().numpy()
        return cls(
            per_layer=per_layer,
            cls_maps=class_token_maps(per_layer, grid),
            rollout=rollout,
            rollout_map=class_token_maps(rollout, grid),
            grid=tuple(grid),
        )


@torch.no_grad()
def forward_with_attentions(model: nn.Module, pixel_values: torch.Tensor, **model_kwargs):
    """The model's output with `output_attentions=True`, run in eval mode (attention dropout would make the
    maps random); the model's training mode is put back afterwards."""
    was_training = model.training
    model.eval()
    try:
        return model(pixel_values=pixel_values, output_attentions=True, **model_kwargs)
    finally:
        model.train(was_training)


def attention_maps(
    model: nn.Module,
    pixel_values: torch.Tensor,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    **model_kwargs,
) -> AttentionMaps:
    """Run `model` on `pixel_values` and return its attention maps; `model_kwargs` go to the model (e.g.
    `interpolate_pos_encoding=True` for an image of another size than the model's)."""
    outputs = forward_with_attentions(model, pixel_values, **model_kwargs)
    grid = patch_grid(model.config, pixel_values)
    return AttentionMaps.from_attentions(outputs.attentions, grid, head_fusion, discard_ratio)


__all__ = [
    "HEAD_FUSIONS",
    "AttentionMaps",
    "attention_maps",
    "attention_rollout",
    "class_token_maps",
    "forward_with_attentions",
    "layer_head_maps",
    "patch_grid",
    "rollout_maps",
]
