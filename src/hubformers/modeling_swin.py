"""Swin Transformer: "Hierarchical Vision Transformer using Shifted Windows" (Liu et al., 2021).

Patches of 4x4 pixels are embedded (Section 3.1); each stage runs pairs of blocks whose self-attention stays
inside non-overlapping M x M windows, the second block of a pair on windows shifted by M // 2, computed as a
cyclic shift of the map plus a mask that keeps the wrapped-around regions apart (Section 3.2, Fig. 2 and 4);
every attention adds a learned bias per relative offset inside the window (Eq. 4). Between stages, patch
merging concatenates 2x2 neighbours and halves the width back to twice the input (Section 3.1), giving the
hierarchical feature maps that `SwinBackbone` hands to detection and segmentation heads.
`SwinForMaskedImageModeling` is SimMIM (Xie et al., 2021, https://arxiv.org/abs/2111.09886).
Paper: https://arxiv.org/abs/2103.14030.

Every forward call takes any input size: the image is padded to whole patches, each map to whole windows
(the shift mask is built for the padded map) and a window wider than the map shrinks to the map, as in
transformers' Swin, but for that call only: the output depends on the input alone. Padding, window and shift
are computed from the sizes without branching on them, so that a `torch.export` program traced at one size
runs at every size of its declared range (named `Dim`s or `Dim.DYNAMIC`). The relative-position bias of a
block and the shift mask are built once per map size and cached (rebuilt whenever the bias table changes),
and attention goes through transformers' interface with the bias and mask as one additive mask; a call that
asks for `output_attentions` runs the eager path, which returns the probabilities. The linears, the window
attention and the stages' chunking go through the hooks of `modeling_common.FAST_PATHS`, where hubformers plugs
in its CPU fast paths (swin_fast_paths.py). Module names are
transformers' own, so checkpoints written by transformers' Swin (microsoft/swin-* on the Hub) load as they
are; a checkpoint with another window size loads with its bias tables resized bicubically.
"""

import functools
from typing import Unpack

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.backbone_utils import BackboneMixin, filter_output_hidden_states
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.core_model_loading import ConversionOps, WeightConverter
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BackboneOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.swin.modeling_swin import (
    SwinImageClassifierOutput,
    SwinMaskedImageModelingOutput,
    SwinModelOutput,
)
from transformers.utils import TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .checks import check_patches, check_pixel_values, classification_loss
from .configuration_swin import SwinConfig
from .configuration_utils import to_pair
from .modeling_common import (
    FAST_PATHS,
    FeedForward,
    ModelNamesLayout,
    add_branch,
    eager_attention_forward,
    eager_unless,
    is_static,
    mask_patches,
    resize_positions,
    simmim_decoder,
    simmim_loss,
)


def cache_when_static(build):
    """`build(*ints, device)` memoised for plain-int arguments; called afresh under export/compile tracing."""
    cached = functools.lru_cache(maxsize=64)(build)

    @functools.wraps(build)
    def wrapper(*args):
        return cached(*args) if is_static(*args[:-1]) else build(*args)

    return wrapper


@cache_when_static
def relative_position_index(window: int, table_window: int, device: torch.device) -> torch.Tensor:
    """(window^2, window^2) rows of a (2 * table_window - 1)^2 bias table: the offset (dh, dw) from token j to
    token i of a window -> row (dh + table_window - 1) * (2 * table_window - 1) + dw + table_window - 1.
    A window smaller than the table's uses the table's central rows, the offsets it can hold."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window, device=device), torch.arange(window, device=device), indexing="ij")
    ).flatten(1)
    offsets = coords[:, :, None] - coords[:, None, :] + table_window - 1  # (2, N, N), each in [0, 2 * table_window - 2]
    return offsets[0] * (2 * table_window - 1) + offsets[1]


@cache_when_static
def shifted_window_mask(
    height: int, width: int, window: int, shift: int, images: int, device: torch.device
) -> torch.Tensor:
    """(images * num_windows, N, N) additive mask for attention on `images` (height, width) maps cyclically
    shifted by `shift`: 0 between tokens of the same region of the unshifted map, -100 across regions (Section
    3.2, Fig. 4). Along each axis the regions are [0, size - window), [size - window, size - shift) and
    [size - shift, size)."""
    rows, cols = window_positions(height, width, window, images, device)
    row_region = (rows >= height - window).long() + (rows >= height - shift).long()
    col_region = (cols >= width - window).long() + (cols >= width - shift).long()
    num_windows = images * (height // window) * (width // window)
    region = (row_region * 3 + col_region).view(num_windows, window * window)
    return torch.where(region[:, None, :] == region[:, :, None], 0.0, -100.0)


def whole(size: int, multiple: int) -> int:
    """How many `multiple`s cover `size` (rounding up). Padding to `whole(size, m) * m`, never `size % m`, lets
    `torch.export` prove the views of the padded map for every size instead of guarding on the one it traced; the
    `max` with 1 (a no-op for sizes >= 1) tells its range analysis that a count is never 0."""
    count = (size + multiple - 1) // multiple
    return count if type(count) is int else torch.sym_max(count, 1)


def least(a: int, b: int) -> int:
    """The smaller of two sizes: plain ints, or export's symbolic sizes, whose comparison in `min` would add a
    guard that `torch.sym_min` does not."""
    return min(a, b) if type(a) is int and type(b) is int else torch.sym_min(a, b)


def may_shift(shift: int) -> bool:
    """Whether windows shifted by `shift` need the shift mask: a plain int says; a symbolic one (under export,
    where a map may or may not be wider than a window) always gets the mask, which is 0 for unshifted windows."""
    return type(shift) is not int or shift > 0


def window_positions(
    height: int, width: int, window: int, images: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column in a (height, width) map of each token of its windows, in window order (windows, and the
    tokens in each, row-major), for `images` maps one after the other: two flat tensors. Computed from one range
    rather than viewed from the map, so that no tensor has a number of windows (per image or along an axis) as
    a size of its own, on which `torch.export` would guard: it is 1 at some sizes and not at others."""
    tokens, per_row = window * window, width // window
    position = torch.arange(images * height * width, device=device)
    index, offset = remainder(position // tokens, (height // window) * per_row), remainder(position, tokens)
    return index // per_row * window + offset // window, remainder(index, per_row) * window + remainder(offset, window)


def remainder(indices: torch.Tensor, size: int) -> torch.Tensor:
    """`indices % size` for indices >= 0, as `indices - indices // size * size`: torch.onnx cannot translate `%` by
    a size that varies with the input."""
    return indices - indices // size * size


@cache_when_static
def window_order(height: int, width: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """Cyclic shift plus window partition of a (height, width) map as one permutation of its raster indices:
    entry i is the token that lands at position i of the windows (one gather instead of roll, then copy)."""
    rows, cols = window_positions(height, width, window, 1, device)
    # the map rolled up and left by `shift`
    return remainder(rows + shift, height) * width + remainder(cols + shift, width)


@cache_when_static
def raster_order(height: int, width: int, window: int, shift: int, crop_h: int, crop_w: int, device) -> torch.Tensor:
    """The inverse of `window_order`, restricted to the top-left (crop_h, crop_w) of the map: entry j is the
    window position of raster token j, so one gather un-shifts, merges the windows and drops the padding."""
    order = window_order(height, width, window, shift, device)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=device)
    # a gather, not a slice of the (height, width) view: slicing branches on whether the crop is the whole map
    kept = torch.arange(crop_h, device=device)[:, None] * width + torch.arange(crop_w, device=device)[None, :]
    return inverse[kept.flatten()]


def resize_bias_table(table: torch.Tensor, num_rows: int) -> torch.Tensor:
    """A ((2M - 1)^2, heads) relative-position-bias table resized bicubically to `num_rows` = (2M' - 1)^2
    rows, for a checkpoint loaded at window size M' (as timm and Swin V2 resize them)."""
    if table.shape[0] == num_rows:
        return table
    side, new_side = round(table.shape[0] ** 0.5), round(num_rows**0.5)
    if side**2 != table.shape[0] or new_side**2 != num_rows:
        raise ValueError(
            f"A relative position bias table needs a square number of rows, got {table.shape[0]} -> {num_rows}."
        )
    # (side^2, heads) -> (1, heads, side, side): interpolate works on channels-first images
    grid = table.T.reshape(1, -1, side, side).float()
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    return grid.reshape(-1, num_rows).T.contiguous().to(table.dtype)


class ResizeRelativePositionBias(ConversionOps):
    """Checkpoint loading: resizes a bias table to the window size of the model it loads into."""

    def convert(self, input_dict, source_patterns, target_patterns, model=None, full_layer_name=None, **kwargs):
        (table,) = next(iter(input_dict.values()))
        num_rows = model.get_parameter(full_layer_name).shape[0] if model is not None else table.shape[0]
        return {target_patterns[0]: resize_bias_table(table, num_rows)}

    @property
    def reverse_op(self) -> ConversionOps:
        return self


class SwinDropPath(nn.Module):
    """Stochastic depth: drops the residual branch of whole samples during training (Huang et al., 2016)."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.p = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return hidden_states
        keep_prob = 1.0 - self.p
        keep = torch.rand((hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1), device=hidden_states.device)
        return hidden_states / keep_prob * torch.floor(keep + keep_prob).to(hidden_states.dtype)


class SwinPatchEmbeddings(nn.Module):
    """Non-overlapping patches -> tokens; an image that is not a whole number of patches is zero-padded
    at the bottom and right."""

    def __init__(self, config: SwinConfig):
        super().__init__()
        self.num_channels = config.num_channels
        self.patch_size = to_pair(config.patch_size)
        self.projection = nn.Conv2d(
            config.num_channels, config.embed_dim, kernel_size=self.patch_size, stride=self.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels)
        check_patches(pixel_values, self.patch_size)
        (height, width), (patch_h, patch_w) = pixel_values.shape[-2:], self.patch_size
        pad_h, pad_w = whole(height, patch_h) * patch_h - height, whole(width, patch_w) * patch_w - width
        if not is_static(height, width) or pad_h or pad_w:
            pixel_values = F.pad(pixel_values, (0, pad_w, 0, pad_h))
        return self.projection(pixel_values.to(self.projection.weight.dtype))  # (batch, C, grid_h, grid_w)


class SwinEmbeddings(nn.Module):
    """Patch tokens, LayerNorm, optional absolute positions; optionally a mask token for masked patches."""

    def __init__(self, config: SwinConfig, use_mask_token: bool = False):
        super().__init__()
        self.grid_size = config.grid_size
        self.patch_embeddings = SwinPatchEmbeddings(config)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim)) if use_mask_token else None
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.position_embeddings = (
            nn.Parameter(torch.zeros(1, num_patches, config.embed_dim)) if config.use_absolute_embeddings else None
        )
        self.norm = nn.LayerNorm(config.embed_dim)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def positions(self, grid_h: int, grid_w: int, interpolate_pos_encoding: bool) -> torch.Tensor:
        """The absolute position embeddings, resized bicubically to (grid_h, grid_w) when asked."""
        if interpolate_pos_encoding:
            return resize_positions(self.position_embeddings, self.grid_size, grid_h, grid_w)
        if (grid_h, grid_w) != self.grid_size:
            raise ValueError(
                f"Absolute position embeddings are for a {self.grid_size} patch grid, got {(grid_h, grid_w)}; "
                "pass `interpolate_pos_encoding=True` to run at another resolution."
            )
        return self.position_embeddings

    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        patches = self.patch_embeddings(pixel_values)
        grid_h, grid_w = patches.shape[-2:]
        tokens = self.norm(patches.flatten(2).transpose(1, 2))  # (batch, grid_h * grid_w, C)
        tokens = mask_patches(tokens, bool_masked_pos, self.mask_token)
        if self.position_embeddings is not None:
            tokens = tokens + self.positions(grid_h, grid_w, interpolate_pos_encoding)
        return self.dropout(tokens), (grid_h, grid_w)


class SwinRelativePositionBias(nn.Module):
    """The learned bias B of Eq. 4: one value per head for each of the (2M - 1)^2 offsets in an M x M window."""

    def __init__(self, num_heads: int, window_size: int):
        super().__init__()
        self.window_size = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))

    def forward(self, window: int) -> torch.Tensor:
        """(1, heads, window^2, window^2) for a window of side `window` <= the table's."""
        table = self.relative_position_bias_table
        index = relative_position_index(window, self.window_size, table.device)
        return table[index].permute(2, 0, 1).unsqueeze(0)


class SwinAttention(nn.Module):
    """Multi-head self-attention inside each window, with the relative position bias and (for shifted windows)
    the region mask added to the scores. The output projection `o_proj` is the block's to apply, after the
    windows are un-shifted, so that it can add the residual in the same call."""

    def __init__(self, config: SwinConfig, dim: int, num_heads: int):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.dropout = config.attention_probs_dropout_prob
        self.q_proj = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.k_proj = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.v_proj = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.o_proj = nn.Linear(dim, dim)
        self.relative_position_bias = SwinRelativePositionBias(num_heads, config.window_size)
        self._mask_cache: dict = {}

    def additive_mask(
        self, height: int, width: int, window: int, shift: int, dtype: torch.dtype, images: int = 1
    ) -> torch.Tensor:
        """Bias plus shift mask, (1 or images * num_windows, heads, N, N), for `images` padded (height, width)
        maps. Cached per map size while the bias table is unchanged and needs no gradient."""
        table = self.relative_position_bias.relative_position_bias_table
        cacheable = is_static(height, width, window, shift, images) and not (
            torch.is_grad_enabled() and table.requires_grad
        )
        key = (
            (height, width, window, shift, images, dtype, table.device, table.data_ptr(), table._version)
            if cacheable
            else None
        )
        if key in self._mask_cache:
            return self._mask_cache[key]
        mask = self.relative_position_bias(window).to(dtype)
        if may_shift(shift):
            # on the bias's device: the table's is `meta` while offloading hooks hold its weights elsewhere
            shifted = shifted_window_mask(height, width, window, shift, images, mask.device)
            mask = mask + shifted.to(dtype).unsqueeze(1)
        if cacheable:
            if any(k[-2:] != key[-2:] for k in self._mask_cache) or len(self._mask_cache) >= 16:
                self._mask_cache.clear()
            self._mask_cache[key] = mask
        return mask

    def forward(
        self, tokens: torch.Tensor, map_size: tuple[int, int], crop: tuple[int, int], window: int, shift: int, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(Shifted) window attention over the (batch, H' * W', C) tokens of a map of `map_size` (padded to whole
        windows): the heads' outputs, concatenated, before `o_proj`, un-shifted, in raster order and cropped to
        the map's top-left `crop` (its size before padding); and the attention probabilities when asked for."""
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        attention = eager_unless(attention, self.config, kwargs)
        heads = FAST_PATHS.replaced("swin_windows", self, attention, tokens, map_size, crop, window, shift)
        if heads is not None:
            return heads, None
        batch = tokens.shape[0]
        heads, weights = self.attend(
            attention, self.windows_of(tokens, map_size, window, shift), map_size, window, shift, batch, **kwargs
        )
        return self.to_raster(heads, batch, map_size, crop, window, shift), weights

    def windows_of(self, tokens: torch.Tensor, map_size: tuple[int, int], window: int, shift: int) -> torch.Tensor:
        """(batch, H' * W', C) -> shifted windows (batch * num_windows, window^2, C), through all tokens in one
        dimension: export guards on a view that splits batch * num_windows off batch (num_windows may be 1)."""
        batch, _, dim = tokens.shape
        num_windows = batch * (map_size[0] // window) * (map_size[1] // window)
        order = window_order(*map_size, window, shift, tokens.device)
        return tokens.index_select(1, order).flatten(0, 1).view(num_windows, window * window, dim)

    def to_raster(self, heads: torch.Tensor, batch: int, map_size, crop, window: int, shift: int) -> torch.Tensor:
        """Windows (batch * num_windows, window^2, C) -> un-shifted (batch, crop_h * crop_w, C) without the
        padding, in one gather."""
        order = raster_order(*map_size, window, shift, *crop, heads.device)
        return heads.flatten(0, 1).view(batch, map_size[0] * map_size[1], -1).index_select(1, order)

    def attend(
        self,
        attention,
        windows: torch.Tensor,
        map_size: tuple[int, int],
        window: int,
        shift: int,
        images: int,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(windows, N, dim) outputs of attention on the (windows, N, dim) tokens of `images` maps' windows."""
        num_windows, num_tokens, width = windows.shape

        def heads(projection):  # (windows, N, dim) -> (windows, heads, N, head_dim)
            return (
                FAST_PATHS.linear(projection, windows).view(num_windows, num_tokens, self.num_heads, -1).transpose(1, 2)
            )

        # one mask per window position, cached, at plain sizes; traced, the whole batch's (see `window_positions`)
        images = 1 if is_static(num_windows) else images
        mask = self.additive_mask(*map_size, window, shift, windows.dtype, images=images)
        if is_static(num_windows) and may_shift(shift) and mask.shape[0] != num_windows:
            mask = mask.repeat(num_windows // mask.shape[0], 1, 1, 1)  # for every image of the batch
        output, weights = attention(
            self,
            heads(self.q_proj),
            heads(self.k_proj),
            heads(self.v_proj),
            mask,
            scaling=self.scaling,
            dropout=self.dropout if self.training else 0.0,
            **kwargs,
        )
        return output.reshape(num_windows, num_tokens, width), weights


class SwinLayer(GradientCheckpointingLayer):
    """One Swin block (Eq. 3): x + (S)W-MSA(LN(x)), then x + MLP(LN(x)); odd blocks shift the windows."""

    def __init__(self, config: SwinConfig, dim: int, num_heads: int, drop_path: float, shifted: bool):
        super().__init__()
        self.window_size = config.window_size
        self.shift_size = config.window_size // 2 if shifted else 0
        self.layernorm_before = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = SwinAttention(config, dim, num_heads)
        self.layernorm_after = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config, dim, int(config.mlp_ratio * dim))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.drop_path = SwinDropPath(drop_path)

    def window_and_shift(self, height: int, width: int, always_partition: bool) -> tuple[int, int]:
        """A map no larger than a window is one window, unshifted (unless `always_partition`, as backbones do).
        Written with min, not a branch, so that an exported program keeps every map size."""
        if always_partition:
            return self.window_size, self.shift_size
        side = least(height, width)
        window = least(side, self.window_size)
        return window, self.shift_size * least(side - window, 1)  # shifted only if the map is wider than a window

    def forward(
        self,
        hidden_states: torch.Tensor,
        input_dimensions: tuple[int, int],
        always_partition: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        height, width = input_dimensions
        batch, _, channels = hidden_states.shape
        window, shift = self.window_and_shift(height, width, always_partition)

        # (batch, H * W, C) -> padded to whole windows (batch, H' * W', C)
        normed = self.layernorm_before(hidden_states)
        pad_h, pad_w = whole(height, window) * window - height, whole(width, window) * window - width
        if not is_static(height, width) or pad_h or pad_w:
            normed = F.pad(normed.view(batch, height, width, channels), (0, 0, 0, pad_w, 0, pad_h)).flatten(1, 2)
        map_size = (height + pad_h, width + pad_w)
        heads, weights = self.attention(normed, map_size, input_dimensions, window, shift, **kwargs)
        hidden_states = add_branch(self.attention.o_proj, heads, hidden_states, self.dropout, self.drop_path)
        return self.mlp.add_to(hidden_states, self.layernorm_after, self.dropout, self.drop_path), weights


class SwinPatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated (4C), normalised and projected to 2C; odd maps are zero-padded."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, hidden_states: torch.Tensor, input_dimensions: tuple[int, int]) -> torch.Tensor:
        height, width = input_dimensions
        batch, _, channels = hidden_states.shape
        feature_map = hidden_states.view(batch, height, width, channels)
        half_h, half_w = whole(height, 2), whole(width, 2)
        if not is_static(height, width) or height % 2 or width % 2:
            feature_map = F.pad(feature_map, (0, 0, 0, 2 * half_w - width, 0, 2 * half_h - height))
        # (batch, 2h, 2w, C) -> (batch, h * w, 4C), neighbours ordered (0,0), (1,0), (0,1), (1,1)
        merged = feature_map.view(batch, half_h, 2, half_w, 2, channels)
        merged = merged.permute(0, 1, 3, 4, 2, 5).reshape(batch, half_h * half_w, 4 * channels)
        return FAST_PATHS.linear(self.reduction, self.norm(merged))


class SwinStage(GradientCheckpointingLayer):
    """Blocks at one resolution, then patch merging (all stages but the last). Without gradients, the blocks run
    through `FAST_PATHS.slices` (each image is independent of the others), which runs them over chunks of
    images so that a block's activations stay in cache."""

    def __init__(self, config: SwinConfig, index: int, drop_paths: list[float]):
        super().__init__()
        self.config = config
        dim = config.embed_dim * 2**index
        self.widest = max(int(config.mlp_ratio * dim), 3 * dim)  # the MLP's hidden or the qkv, per token
        self.blocks = nn.ModuleList(
            [
                SwinLayer(config, dim, config.num_heads[index], drop_path, shifted=block % 2 == 1)
                for block, drop_path in enumerate(drop_paths)
            ]
        )
        self.downsample = SwinPatchMerging(dim) if index < len(config.depths) - 1 else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        input_dimensions: tuple[int, int],
        always_partition: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns the tokens for the next stage, this stage's map before merging, and the last block's attention."""

        def run_blocks(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            weights = None
            for block in self.blocks:
                tokens, weights = block(tokens, input_dimensions, always_partition, **kwargs)
            return tokens, weights

        # training keeps whole batches: its activations stay alive for the backward, and chunks measured slower
        if kwargs.get("output_attentions", self.config.output_attentions) or (
            torch.is_grad_enabled() and hidden_states.requires_grad
        ):
            hidden_states, weights = run_blocks(hidden_states)
        else:
            image_bytes = hidden_states.shape[1] * self.widest * hidden_states.element_size()
            hidden_states, weights = (
                FAST_PATHS.slices(lambda x: run_blocks(x)[0], (hidden_states,), 0, image_bytes),
                None,
            )
        before_merging = hidden_states
        if self.downsample is not None:
            hidden_states = self.downsample(hidden_states, input_dimensions)
        return hidden_states, before_merging, weights


def final_grid(config: SwinConfig, height: int, width: int) -> tuple[int, int]:
    """The last stage's map size for an image of (height, width): padded to patches, then halved (rounding
    up) by each patch merging."""
    patch_h, patch_w = to_pair(config.patch_size)
    grid_h, grid_w = whole(height, patch_h), whole(width, patch_w)
    for _ in range(len(config.depths) - 1):
        grid_h, grid_w = whole(grid_h, 2), whole(grid_w, 2)
    return grid_h, grid_w


def to_feature_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(batch, height * width, C) -> (batch, C, height, width)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


class SwinPreTrainedModel(ModelNamesLayout):
    config_class = SwinConfig
    base_model_prefix = "swin"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["SwinStage"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _can_record_outputs = {
        # one entry per stage, as transformers' Swin: the tokens entering stage 1, then each stage's output
        "hidden_states": OutputRecorder(SwinStage, index=0, capture_initial_hidden_state=True),
        "attentions": OutputRecorder(SwinStage, index=2),
    }
    # transformers' checkpoints before 5.0 stored the (derived) relative position index
    _keys_to_ignore_on_load_unexpected = [r"relative_position_index"]

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, SwinEmbeddings):
            if module.mask_token is not None:
                init.zeros_(module.mask_token)
            if module.position_embeddings is not None:
                init.trunc_normal_(module.position_embeddings, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, SwinRelativePositionBias):
            init.trunc_normal_(module.relative_position_bias_table, mean=0.0, std=self.config.initializer_range)


class SwinModel(SwinPreTrainedModel):
    """The encoder: patch embedding, the stages, a final LayerNorm and an optional average pool."""

    def __init__(self, config: SwinConfig, add_pooling_layer: bool = True, use_mask_token: bool = False):
        super().__init__(config)
        self.num_features = config.hidden_size
        self.embeddings = SwinEmbeddings(config, use_mask_token=use_mask_token)
        # stochastic depth rises linearly over all blocks
        rates = [config.drop_path_rate * i / max(sum(config.depths) - 1, 1) for i in range(sum(config.depths))]
        starts = [sum(config.depths[:index]) for index in range(len(config.depths))]
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(
            [
                SwinStage(config, index, rates[start : start + depth])
                for index, (start, depth) in enumerate(zip(starts, config.depths))
            ]
        )
        self.layernorm = nn.LayerNorm(self.num_features, eps=config.layer_norm_eps)
        self.pooler = nn.AdaptiveAvgPool1d(1) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        always_partition: bool = False,
        maps_before_merging: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SwinModelOutput:
        """`reshaped_hidden_states` (with `output_hidden_states`): the stem's and each stage's map as
        (batch, C, height, width), after patch merging, or before it with `maps_before_merging` (backbones)."""
        hidden_states, (height, width) = self.embeddings(pixel_values, bool_masked_pos, interpolate_pos_encoding)
        wants_maps = kwargs.get("output_hidden_states", self.config.output_hidden_states)
        maps = [to_feature_map(hidden_states, height, width)] if wants_maps else None
        for stage in self.encoder.layers:
            hidden_states, before_merging, _ = stage(hidden_states, (height, width), always_partition, **kwargs)
            if maps is not None and maps_before_merging:
                maps.append(to_feature_map(before_merging, height, width))
            if stage.downsample is not None:
                height, width = whole(height, 2), whole(width, 2)
            if maps is not None and not maps_before_merging:
                maps.append(to_feature_map(hidden_states, height, width))

        sequence_output = self.layernorm(hidden_states)
        pooled_output = self.pooler(sequence_output.transpose(1, 2)).flatten(1) if self.pooler is not None else None
        return SwinModelOutput(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            reshaped_hidden_states=tuple(maps) if maps is not None else None,
        )


class SwinForImageClassification(SwinPreTrainedModel):
    """A linear head on the average-pooled final tokens. The loss follows `config.problem_type` (single-label,
    multi-label or regression) as in transformers; when it is unset, each call infers the type from its labels
    and leaves the config unset (transformers records the first call's type). Single-label labels of -100 are
    ignored."""

    def __init__(self, config: SwinConfig):
        super().__init__(config)
        self.swin = SwinModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SwinImageClassifierOutput:
        outputs = self.swin(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        logits = self.classifier(outputs.pooler_output)
        loss = classification_loss(self, labels, logits, **kwargs) if labels is not None else None
        return SwinImageClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            reshaped_hidden_states=outputs.reshaped_hidden_states,
        )


class SwinForMaskedImageModeling(SwinPreTrainedModel):
    """SimMIM: masked patches are replaced by a learned token; a 1x1 conv + pixel shuffle on the last stage's
    map predicts the pixels, and the loss is the L1 error on masked pixels only (SimMIM Section 3)."""

    def __init__(self, config: SwinConfig):
        super().__init__(config)
        self.swin = SwinModel(config, add_pooling_layer=False, use_mask_token=True)
        self.decoder = simmim_decoder(config.hidden_size, config.encoder_stride, config.num_channels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SwinMaskedImageModelingOutput:
        check_pixel_values(pixel_values, self.config.num_channels)  # before reading its size
        patch_h, patch_w = to_pair(self.config.patch_size)
        height, width = pixel_values.shape[-2:]
        if bool_masked_pos is not None:
            merges = 2 ** (len(self.config.depths) - 1)
            if (patch_h * merges, patch_w * merges) != to_pair(self.config.encoder_stride):
                raise ValueError(
                    f"A masked-image-modeling loss needs `encoder_stride` == patch_size * 2**(stages - 1) = "
                    f"{(patch_h * merges, patch_w * merges)} so the reconstruction matches the input, "
                    f"got encoder_stride={self.config.encoder_stride}."
                )
            if height % (patch_h * merges) or width % (patch_w * merges):
                raise ValueError(
                    f"A masked-image-modeling loss needs image sides divisible by the total stride "
                    f"{(patch_h * merges, patch_w * merges)}, got {height}x{width}."
                )
        outputs = self.swin(pixel_values, bool_masked_pos, interpolate_pos_encoding, **kwargs)
        feature_map = to_feature_map(outputs.last_hidden_state, *final_grid(self.config, height, width))
        reconstruction = self.decoder(feature_map)

        loss = None
        if bool_masked_pos is not None:
            loss = simmim_loss(pixel_values, reconstruction, bool_masked_pos, (patch_h, patch_w))
        return SwinMaskedImageModelingOutput(
            loss=loss,
            reconstruction=reconstruction,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            reshaped_hidden_states=outputs.reshaped_hidden_states,
        )


class SwinBackbone(BackboneMixin, SwinPreTrainedModel):
    """Multi-scale feature maps for detection and segmentation heads (transformers' backbone API): the stem's
    and each stage's map before patch merging, each with its own LayerNorm, for the stages in
    `config.out_features`. Windows keep their size and shift at every resolution, as in transformers."""

    def __init__(self, config: SwinConfig):
        super().__init__(config)
        self.num_features = [config.embed_dim] + [config.embed_dim * 2**i for i in range(len(config.depths))]
        self.swin = SwinModel(config, add_pooling_layer=False)
        self.hidden_states_norms = nn.ModuleDict(
            {stage: nn.LayerNorm(channels) for stage, channels in zip(self.out_features, self.channels)}
        )
        self.post_init()

    @can_return_tuple
    @filter_output_hidden_states
    def forward(self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> BackboneOutput:
        outputs = self.swin(pixel_values, always_partition=True, maps_before_merging=True, **kwargs)
        feature_maps = tuple(
            self.hidden_states_norms[stage](feature_map.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()
            for stage, feature_map in zip(self.stage_names, outputs.reshaped_hidden_states)
            if stage in self.out_features
        )
        return BackboneOutput(
            feature_maps=feature_maps, hidden_states=outputs.reshaped_hidden_states, attentions=outputs.attentions
        )


# transformers' Swin checkpoints (microsoft/swin-* on the Hub) keep the pre-5.0 key layout; its "swin"
# conversion renames them to the module names we share with it. Registered for our model type too, because
# transformers skips conversions for custom classes otherwise; bias tables are resized to our window size.
register_checkpoint_conversion_mapping(
    SwinConfig.model_type,
    get_checkpoint_conversion_mapping("swin")
    + [
        WeightConverter(
            "relative_position_bias_table", "relative_position_bias_table", operations=[ResizeRelativePositionBias()]
        )
    ],
    overwrite=True,
)

__all__ = [
    "SwinBackbone",
    "SwinForImageClassification",
    "SwinForMaskedImageModeling",
    "SwinModel",
    "SwinPreTrainedModel",
]
