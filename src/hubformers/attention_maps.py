"""Attention maps of vision transformers: every layer's and head's class-token attention, and attention rollout;
for Swin, every block's window attention spread over its stage's map, and a rollout through the stages.

Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", 2020, Section 3,
https://arxiv.org/abs/2005.00928) follows attention through the layers: each layer's attention, heads fused,
gets the identity added for the residual connection (0.5 * A + 0.5 * I) and its rows re-normalised, and the
layers are multiplied, rollout_l = A_l @ rollout_{l-1}. The class token's row of the rollout says how much
each patch flowed into it. Max/min head fusion and discarding the lowest attentions follow jacobgil's
vit-explain (https://github.com/jacobgil/vit-explain).

Any model fits whose `output_attentions=True` gives a tuple of (batch, heads, tokens, tokens) tensors, with
the class token first and the grid_h * grid_w patch tokens last, row-major: hubformers' ViT, CLIP's vision tower.

Swin (hubformers' `hubformers_swin` and transformers' `swin` models) has no class token, attends inside windows
of a padded, cyclically shifted map and merges 2x2 tokens between stages; its `output_attentions` holds only each
stage's last block, so forward hooks collect every block's (batch * num_windows, heads, N, N) window attention
(N = window^2, windows row-major, batch-major). `unwindow_attention` puts a block's windows back on the stage's
map: a block-sparse (batch, heads, H * W, H * W) matrix over the unpadded tokens, zero outside the (shifted)
windows; rows miss the attention given to padding tokens. It is dense: 3136^2 float32 = 39 MB per head and image
on the first stage of a 224 x 224 Swin-T (56 x 56 tokens), so the maps below never form it per head:
`swin_query_map` reads one query token's row out of its window ("where does this position look": the window
and the shift show), and `swin_rollout` fuses the heads (and discards the lowest attentions) inside each window
before spreading one block at a time. The rollout is ViT's within a stage (0.5 * A + 0.5 * I, rows
re-normalised, layers multiplied); across a patch merging each merged token's flow is split equally among the
2x2 tokens it concatenates (fewer at the bottom and right edges of odd maps, where the model pads with zeros,
which carry nothing). Swin's classifier averages the final tokens, so the saliency map is the mean over the
final tokens of the rollout, over the first stage's patches. The rollout is multiplied from the last block
backwards, so its largest product is (final tokens, T) @ (T, T), not (T, T) @ (T, T): Swin-T at 224 x 224 takes
about 0.4 s and 0.25 GB on 2 CPU cores. `swin_attention_maps(model, pixel_values, query=(y, x))` runs it all.
"""

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers.backbone_utils import BackboneMixin

from .checks import require_probability
from .configuration_utils import to_pair
from .modeling_swin import window_order

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


def discard_lowest(attention: torch.Tensor, discard_ratio: float, spare_class_token: bool = True) -> torch.Tensor:
    """Zero the lowest `discard_ratio` share of each (tokens, tokens) map, but never the class token's
    attention to itself, as vit-explain does (which there only reaches the first image of a batch);
    `spare_class_token=False` for maps without one (Swin's windows)."""
    flat = attention.flatten(1)
    lowest = flat.topk(int(flat.shape[1] * discard_ratio), dim=1, largest=False).indices
    drop = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, lowest, True)
    drop[:, 0] = drop[:, 0] & (not spare_class_token)  # flat index 0 is (class token, class token)
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


# Swin: window attention spread over each stage's map, and rollout through the patch mergings

SWIN_MODEL_TYPES = ("hubformers_swin", "swin")


def is_swin(config) -> bool:
    """Whether `config` is hubformers' or transformers' Swin (V1)."""
    return getattr(config, "model_type", None) in SWIN_MODEL_TYPES


@dataclass(frozen=True)
class SwinLayout:
    """Where one Swin block's windows lie: its stage (from 0), the stage's map (height, width) before padding,
    and the window side and cyclic shift the block ran with."""

    stage: int
    grid: tuple[int, int]
    window: int
    shift: int

    @property
    def padded(self) -> tuple[int, int]:
        """The map padded at the bottom and right to whole windows, as the model pads it."""
        return tuple(-(-side // self.window) * self.window for side in self.grid)

    @property
    def num_windows(self) -> int:
        padded_h, padded_w = self.padded
        return (padded_h // self.window) * (padded_w // self.window)


def merged_grid(grid: tuple[int, int]) -> tuple[int, int]:
    """The map after a patch merging: 2x2 tokens -> 1, an odd side padded by one."""
    return tuple((side + 1) // 2 for side in grid)


def swin_stage_grids(config, image_size: tuple[int, int]) -> list[tuple[int, int]]:
    """Each stage's map for an image of (height, width): padded to whole patches, then merged stage by stage."""
    (height, width), (patch_h, patch_w) = image_size, to_pair(config.patch_size)
    grids = [(-(-height // patch_h), -(-width // patch_w))]
    for _ in range(len(config.depths) - 1):
        grids.append(merged_grid(grids[-1]))
    return grids


def swin_layouts(config, image_size: tuple[int, int], always_partition: bool = False) -> tuple[SwinLayout, ...]:
    """Every block's layout for an image of (height, width), first block first. Odd blocks of a stage shift by
    window // 2; a map no larger than the window gets windows of its shorter side, unshifted, unless
    `always_partition` (as backbones run)."""
    layouts = []
    for stage, (grid, depth) in enumerate(zip(swin_stage_grids(config, image_size), config.depths)):
        for block in range(depth):
            if always_partition or min(grid) > config.window_size:
                layouts.append(SwinLayout(stage, grid, config.window_size, config.window_size // 2 if block % 2 else 0))
            else:
                layouts.append(SwinLayout(stage, grid, min(grid), 0))
    return tuple(layouts)


def window_batch(attention: torch.Tensor, layout: SwinLayout) -> int:
    """The batch size of a (batch * num_windows, ..., N, N) window attention laid out as `layout`, checked."""
    tokens = layout.window**2
    shape = tuple(getattr(attention, "shape", ()))
    if len(shape) < 3 or shape[-2:] != (tokens, tokens) or shape[0] == 0 or shape[0] % layout.num_windows:
        raise ValueError(
            f"A block with {layout.num_windows} windows of {layout.window}x{layout.window} tokens on a "
            f"{layout.grid[0]}x{layout.grid[1]} map needs attention of shape (batch * {layout.num_windows}, ..., "
            f"{tokens}, {tokens}), got {shape if shape else type(attention).__name__}."
        )
    return shape[0] // layout.num_windows


def window_positions(layout: SwinLayout, device=None) -> torch.Tensor:
    """(num_windows, N): the raster index on the padded map of each window position, windows row-major (the
    model's own shift-and-partition order)."""
    return window_order(*layout.padded, layout.window, layout.shift, device).view(layout.num_windows, -1)


def unpadded_tokens(layout: SwinLayout, device=None) -> torch.Tensor:
    """(H * W,): the raster index on the padded map of each token of the unpadded map, row-major."""
    height, width = layout.grid
    rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)
    return (rows[:, None] * layout.padded[1] + cols[None, :]).flatten()


def unwindow_attention(attention: torch.Tensor, layout: SwinLayout) -> torch.Tensor:
    """A block's (batch * num_windows, ..., N, N) window attention -> (batch, ..., H * W, H * W) over its stage's
    unpadded map, row-major: zero between windows (and, up to the model's exp(-100), across the shift's
    wrap-around); a row misses what its token gave to padding. Memory: (H * W)^2 floats per image and head."""
    batch = window_batch(attention, layout)
    positions = window_positions(layout, attention.device)
    # (batch * num_windows, ..., N, N) -> (batch, ..., num_windows, N, N)
    windows = attention.unflatten(0, (batch, layout.num_windows)).movedim(1, -3)
    dense = windows.new_zeros(*windows.shape[:-3], positions.numel(), positions.numel())
    dense[..., positions[:, :, None], positions[:, None, :]] = windows
    keep = unpadded_tokens(layout, attention.device)
    return dense[..., keep[:, None], keep[None, :]]


def stage_query(query: tuple[int, int], stage: int) -> tuple[int, int]:
    """A first-stage token (row, col) -> the token it is merged into on `stage` (each merging halves, rounding down)."""
    return query[0] >> stage, query[1] >> stage


def swin_query_map(attention: torch.Tensor, layout: SwinLayout, query: tuple[int, int]) -> torch.Tensor:
    """A block's (batch * num_windows, heads, N, N) window attention -> (batch, heads, H, W): the attention of the
    token at `query` = (row, col) of its stage's map over that map, read from its window alone."""
    batch = window_batch(attention, layout)
    row, col = query
    if not (0 <= row < layout.grid[0] and 0 <= col < layout.grid[1]):
        raise ValueError(f"`query` must lie on the {layout.grid[0]}x{layout.grid[1]} map, got {tuple(query)}.")
    positions = window_positions(layout, attention.device)
    (found,) = (positions.flatten() == row * layout.padded[1] + col).nonzero()[:, 0].tolist()
    window, slot = divmod(found, layout.window**2)
    # (batch * num_windows, heads, N, N) -> the query's row of its window, (batch, heads, N)
    rows = attention.unflatten(0, (batch, layout.num_windows))[:, window, :, slot, :]
    spread = rows.new_zeros(*rows.shape[:-1], positions.numel())
    spread[..., positions[window]] = rows
    # (batch, heads, H' * W') -> (batch, heads, H, W)
    return spread[..., unpadded_tokens(layout, attention.device)].unflatten(-1, layout.grid)


def check_query(query: Sequence[float]) -> None:
    """A point (y, x) of an image as fractions of its height and width, each in [0, 1]."""
    if len(query) != 2 or not all(0.0 <= fraction <= 1.0 for fraction in query):
        raise ValueError(f"`query` must be a (y, x) pair of fractions of the image in [0, 1], got {tuple(query)}.")


def query_patch(query: Sequence[float], image_size: tuple[int, int], patch_size) -> tuple[int, int]:
    """The first-stage token (row, col) under the point `query` = (y, x), fractions of the image's height and
    width in [0, 1]: (0.5, 0.5) is the centre, 1 the last patch."""
    check_query(query)
    return tuple(
        min(int(fraction * side) // patch, (side - 1) // patch)
        for fraction, side, patch in zip(query, image_size, to_pair(patch_size))
    )


def merge_flow(grid: tuple[int, int], device=None) -> torch.Tensor:
    """(merged tokens, tokens): a patch merging of a (H, W) map as flow, each merged token's row split equally
    among the 2x2 tokens it concatenates; 2 or 1 at the bottom and right of an odd map, where the model's zero
    padding carries nothing. Rows sum to 1."""
    height, width = grid
    rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)
    # token (r, c) goes into (r // 2, c // 2) of the merged map, row-major
    parents = ((rows[:, None] // 2) * merged_grid(grid)[1] + cols[None, :] // 2).flatten()
    flow = torch.zeros(math.prod(merged_grid(grid)), height * width, device=device)
    flow[parents, torch.arange(height * width, device=device)] = 1.0
    return flow / flow.sum(dim=1, keepdim=True)


def check_swin_attentions(attentions: Sequence[torch.Tensor], layouts: Sequence[SwinLayout]) -> int:
    """One window attention per layout, all of one batch, on stages that follow one another by patch merging;
    returns the batch size."""
    if not attentions or len(attentions) != len(layouts):
        raise ValueError(f"One attention per block is needed: {len(layouts)} layouts, got {len(attentions)}.")
    batches = {window_batch(attention, layout) for attention, layout in zip(attentions, layouts)}
    if len(batches) != 1:
        raise ValueError(f"All blocks' attentions must hold one batch, got batch sizes {sorted(batches)}.")
    for before, after in itertools.pairwise(layouts):
        # the same stage on the same map, or the next stage on the merged map
        if (after.stage, after.grid) not in {(before.stage, before.grid), (before.stage + 1, merged_grid(before.grid))}:
            raise ValueError(
                f"Block layouts must go stage by stage, each patch merging halving the map (rounding up): "
                f"after {before}, got {after}."
            )
    return batches.pop()


def swin_rollout_factor(attention: torch.Tensor, layout: SwinLayout, head_fusion: str, discard_ratio: float):
    """One block's (batch, H * W, H * W) rollout factor: heads fused and the lowest attentions discarded inside
    each window, spread over the map, then 0.5 * A + 0.5 * I with rows re-normalised."""
    # float32: a product of many half-precision layers loses the small attentions
    fused = discard_lowest(fuse_heads(attention.float(), head_fusion), discard_ratio, spare_class_token=False)
    return add_residual(unwindow_attention(fused, layout))


def swin_rollout(
    attentions: Sequence[torch.Tensor],
    layouts: Sequence[SwinLayout],
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """The (batch, final tokens, first-stage tokens) rollout of every block's (batch * num_windows, heads, N, N)
    window attention, first block first: A_L @ ... @ A_k @ merge @ A_{k-1} @ ... @ A_1, with `merge_flow` at each
    patch merging. Row i says how much each first-stage token flowed into final token i; rows sum to 1."""
    check_swin_attentions(attentions, layouts)
    require_probability(discard_ratio=discard_ratio)
    rollout, stage = None, layouts[-1].stage
    for attention, layout in zip(reversed(attentions), reversed(layouts)):
        layer = swin_rollout_factor(attention, layout, head_fusion, discard_ratio)
        if layout.stage != stage:  # back across the patch merging that ends this block's stage
            rollout, stage = rollout @ merge_flow(layout.grid, layer.device), layout.stage
        rollout = layer if rollout is None else rollout @ layer
    return rollout


@dataclass
class SwinAttentionMaps:
    """A batch's Swin attention maps as arrays.

    query_maps: per block, (batch, heads, grid_h, grid_w) the query token's attention over its stage's map.
    rollout: (batch, final tokens, first-stage tokens) attention rollout through the blocks and patch mergings.
    rollout_map: (batch, grid_h, grid_w) the mean over the final tokens of the rollout, on the first stage's map.
    layouts: per block, its stage, map, window and shift.
    query: the query token (row, col) on the first stage's map; on stage s it is (row >> s, col >> s).
    """

    query_maps: tuple[np.ndarray, ...]
    rollout: np.ndarray
    rollout_map: np.ndarray
    layouts: tuple[SwinLayout, ...]
    query: tuple[int, int]

    @property
    def grid(self) -> tuple[int, int]:
        """The first stage's map, (grid_h, grid_w) patches."""
        return self.layouts[0].grid

    @classmethod
    def from_attentions(
        cls,
        attentions: Sequence[torch.Tensor],
        layouts: Sequence[SwinLayout],
        query: tuple[int, int],
        head_fusion: str = "mean",
        discard_ratio: float = 0.0,
    ) -> "SwinAttentionMaps":
        """`attentions`: every block's window attention; `query`: a token (row, col) of the first stage's map."""
        rollout = swin_rollout(attentions, layouts, head_fusion, discard_ratio).detach()
        query_maps = tuple(
            swin_query_map(attention.detach().float(), layout, stage_query(query, layout.stage)).cpu().numpy()
            for attention, layout in zip(attentions, layouts)
        )
        return cls(
            query_maps=query_maps,
            rollout=rollout.cpu().numpy(),
            rollout_map=rollout.mean(dim=1).unflatten(-1, layouts[0].grid).cpu().numpy(),
            layouts=tuple(layouts),
            query=tuple(query),
        )


def swin_blocks(model: nn.Module) -> list[nn.Module]:
    """Every block of a Swin model (classifier, base model, masked-image model or backbone; hubformers' or
    transformers'), in running order."""
    stages = getattr(getattr(model.base_model, "encoder", None), "layers", None)
    if stages is None or not all(hasattr(stage, "blocks") for stage in stages):
        raise ValueError(
            f"Expected a Swin model (stages at `encoder.layers`, each with `blocks`), got {type(model).__name__}."
        )
    return [block for stage in stages for block in stage.blocks]


def forward_with_block_attentions(
    model: nn.Module, pixel_values: torch.Tensor, **model_kwargs
) -> tuple[object, tuple[torch.Tensor, ...]]:
    """The model's output (as `forward_with_attentions`) and every block's window attention, first block first,
    caught by forward hooks: Swin's `output_attentions` keeps only each stage's last block."""
    attentions = []
    hooks = [
        block.register_forward_hook(lambda module, args, output: attentions.append(output[1]))
        for block in swin_blocks(model)
    ]
    try:
        outputs = forward_with_attentions(model, pixel_values, **model_kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs, tuple(attentions)


def swin_layouts_for(model: nn.Module, pixel_values: torch.Tensor) -> tuple[SwinLayout, ...]:
    """The layouts `model` runs `pixel_values` with (backbones partition even maps smaller than a window)."""
    return swin_layouts(model.config, tuple(pixel_values.shape[-2:]), always_partition=isinstance(model, BackboneMixin))


def swin_attention_maps(
    model: nn.Module,
    pixel_values: torch.Tensor,
    query: Sequence[float] = (0.5, 0.5),
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    **model_kwargs,
) -> SwinAttentionMaps:
    """Run a Swin `model` on `pixel_values` and return its maps; `query` = (y, x), fractions of the image in
    [0, 1], picks the token whose attention `query_maps` show (the centre by default)."""
    patch = query_patch(query, tuple(pixel_values.shape[-2:]), model.config.patch_size)
    _, attentions = forward_with_block_attentions(model, pixel_values, **model_kwargs)
    return SwinAttentionMaps.from_attentions(
        attentions, swin_layouts_for(model, pixel_values), patch, head_fusion, discard_ratio
    )


__all__ = [
    "HEAD_FUSIONS",
    "SWIN_MODEL_TYPES",
    "AttentionMaps",
    "SwinAttentionMaps",
    "SwinLayout",
    "attention_maps",
    "attention_rollout",
    "class_token_maps",
    "forward_with_attentions",
    "forward_with_block_attentions",
    "is_swin",
    "layer_head_maps",
    "merge_flow",
    "patch_grid",
    "query_patch",
    "rollout_maps",
    "swin_attention_maps",
    "swin_layouts",
    "swin_query_map",
    "swin_rollout",
    "unwindow_attention",
]
