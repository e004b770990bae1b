"""What the hubformers models share, in plain PyTorch, and the one seam where speed-only code plugs in.

- Attention through transformers' interface (multi-head self-attention: Vaswani et al., 2017, Section 3.2.2),
  `FeedForward` (Section 3.3) and `add_branch`, a residual branch through a linear layer.
- SimMIM's mask-token swap, decoder and masked L1 loss (Xie et al., 2021, https://arxiv.org/abs/2111.09886).
- `resize_positions` (ViT, Section 3.2) and `ModelNamesLayout`, `save_pretrained` under the module names.
- `FAST_PATHS`: the hooks every linear layer and chunkable step goes through, plain here. `import hubformers`
  installs its fast ones (fast_paths.py) unless `HUBFORMERS_FAST_PATHS=0`; a saved folder's remote code holds
  the plain ones only, so it gives the same outputs where hubformers is not installed.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


def plain_linear(layer: nn.Module, x: torch.Tensor, activation: Callable | None = None, residual=None):
    """`activation(layer(x))` or `residual + layer(x)` (at most one of the two)."""
    output = layer(x)
    if activation is not None:
        output = activation(output)
    return output if residual is None else residual + output


class FastPaths:
    """The hooks where speed-only code may take over; each gives the plain result.

    - `linear(layer, x, activation=None, residual=None)`: a linear layer, then its activation or a residual add.
    - `rows(function, hidden_states, width)`: a position-wise function, widest activation `width` per token.
    - `slices(function, tensors, dim, slice_bytes)`: a function of independent slices along `dim`.
    - `attention`: replacements by name for a model's attention step, called through `replaced`.
    """

    def __init__(self):
        self.linear = plain_linear
        self.rows = lambda function, hidden_states, width: function(hidden_states)
        self.slices = lambda function, tensors, dim, slice_bytes: function(*tensors)
        self.attention: dict[str, Callable] = {}

    def replaced(self, name: str, *args):
        """What the replacement registered as `name` gives; None (the model runs its own code) without one, or
        where it does not serve the call."""
        replacement = self.attention.get(name)
        return None if replacement is None else replacement(*args)


FAST_PATHS = FastPaths()


def is_static(*sizes) -> bool:
    """Whether sizes are plain ints outside a compiler trace: safe to branch on and to use as a cache key."""
    return not torch.compiler.is_compiling() and all(type(size) is int for size in sizes)


def add_branch(layer: nn.Module, x: torch.Tensor, residual: torch.Tensor, *dropouts: nn.Module | None) -> torch.Tensor:
    """residual + dropouts(layer(x)); with every dropout idle, the add goes to the linear hook (which fuses it)."""
    if not any_active(dropouts):
        return FAST_PATHS.linear(layer, x, residual=residual)
    return residual + dropped(layer(x), dropouts)


def any_active(dropouts) -> bool:
    """Whether a dropout (or drop-path) module among `dropouts` (None: none) changes its input in this call."""
    return any(dropout is not None and dropout.training and dropout.p > 0.0 for dropout in dropouts)


def dropped(branch: torch.Tensor, dropouts) -> torch.Tensor:
    for dropout in dropouts:
        if dropout is not None:
            branch = dropout(branch)
    return branch


class FeedForward(nn.Module):
    """fc1, activation, fc2 on every token; sizes default to the config's `hidden_size` and `intermediate_size`."""

    def __init__(self, config, dim: int | None = None, hidden: int | None = None):
        super().__init__()
        dim, hidden = dim or config.hidden_size, hidden or config.intermediate_size
        self.fc1 = nn.Linear(dim, hidden)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        hidden = FAST_PATHS.linear(self.fc1, hidden_states, activation=self.act)
        return FAST_PATHS.linear(self.fc2, hidden, residual=residual)

    def add_to(self, hidden_states: torch.Tensor, norm: nn.Module, *dropouts: nn.Module) -> torch.Tensor:
        """hidden_states + dropouts(MLP(norm(hidden_states))), the pre-norm residual block."""
        if any_active(dropouts):
            branch = FAST_PATHS.rows(lambda rows: self(norm(rows)), hidden_states, self.fc1.out_features)
            return hidden_states + dropped(branch, dropouts)
        return FAST_PATHS.rows(lambda rows: self(norm(rows), residual=rows), hidden_states, self.fc1.out_features)


def eager_attention_forward(module, query, key, value, attention_mask, scaling: float, dropout: float = 0.0, **kwargs):
    """softmax(q k^T * scaling + mask) v on (batch, heads, tokens, head_dim); returns the output as
    (batch, tokens, heads, head_dim), like transformers' other backends, and the attention weights."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    output = torch.matmul(F.dropout(weights, p=dropout, training=module.training), value)
    return output.transpose(1, 2).contiguous(), weights


def runs_eager(config, kwargs: dict) -> bool:
    """Whether this call's attention runs the eager path: configured, or asked for by a call that wants the
    attention maps (which the fused sdpa/flex kernels never form)."""
    return config._attn_implementation == "eager" or kwargs.get("output_attentions", config.output_attentions)


def eager_unless(attention: Callable, config, kwargs: dict) -> Callable:
    """`attention`, the configured backend, or eager for a call that `runs_eager`."""
    return eager_attention_forward if runs_eager(config, kwargs) else attention


def attention_mask_for(
    config, kwargs: dict, embeddings: torch.Tensor, attention_mask: torch.Tensor | None, causal: bool = False
):
    """The (batch, tokens) padding mask (1 = attend), causal when `causal`, as this call's backend takes it: for
    eager an additive (batch, 1, tokens, tokens) float mask, else transformers' own (None where nothing is hidden
    and the backend's own causal flag serves)."""
    if not runs_eager(config, kwargs):
        arguments = dict(config=config, inputs_embeds=embeddings, attention_mask=attention_mask)
        return create_causal_mask(**arguments, cache=None) if causal else create_bidirectional_mask(**arguments)
    if attention_mask is None and not causal:
        return None
    num_tokens, device, dtype = embeddings.shape[1], embeddings.device, embeddings.dtype
    visible = torch.ones(num_tokens, num_tokens, dtype=torch.bool, device=device)[None, None]
    if causal:
        visible = visible.tril()
    if attention_mask is not None:
        visible = visible & attention_mask[:, None, None, :].to(device=device, dtype=torch.bool)
    return torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill(~visible, torch.finfo(dtype).min)


class SelfAttention(nn.Module):
    """Multi-head self-attention by the configured backend, or eager for a call that `runs_eager`. Returns the
    heads' output (batch, queries, hidden), for the subclass's output projection, and the weights (None from fused
    kernels); with `num_queries`, only the first tokens ask. Separate query, key and value projections keep
    transformers' checkpoint layout (one fused matmul measured no faster on the CPU)."""

    def __init__(self, config, dropout: float, bias: bool = True):
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False  # a causal tower passes its mask and `is_causal=True` per call
        self.dropout = dropout
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=bias)

    def forward(self, hidden_states, attention_mask=None, num_queries: int | None = None, **kwargs):
        batch_size = hidden_states.shape[0]

        def heads(x):  # (batch, tokens, hidden) -> (batch, heads, tokens, head_dim)
            return x.view(batch_size, x.shape[1], -1, self.head_dim).transpose(1, 2)

        query = heads(FAST_PATHS.linear(self.q_proj, hidden_states[:, :num_queries]))
        key = heads(FAST_PATHS.linear(self.k_proj, hidden_states))
        value = heads(FAST_PATHS.linear(self.v_proj, hidden_states))
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        dropout = self.dropout if self.training else 0.0
        output, weights = eager_unless(attention, self.config, kwargs)(
            self, query, key, value, attention_mask, scaling=self.scaling, dropout=dropout, **kwargs
        )
        return output.reshape(batch_size, query.shape[2], -1), weights


def resize_positions(positions: torch.Tensor, grid_size: tuple[int, int], grid_h: int, grid_w: int) -> torch.Tensor:
    """(1, extra + H*W, dim) position embeddings (leading extra ones, such as a class token's, kept) with the H x W
    grid resized bicubically to (grid_h, grid_w); sizes from shapes keep `torch.export`'s height and width dynamic."""
    num_extra = positions.shape[1] - grid_size[0] * grid_size[1]
    extra, grid = positions[:, :num_extra], positions[:, num_extra:]
    # (1, H*W, dim) -> (1, dim, H, W): interpolate works on channels-first images
    grid = grid.reshape(1, *grid_size, grid.shape[-1]).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
    return torch.cat([extra, grid.flatten(2).transpose(1, 2)], dim=1)


def mask_patches(tokens: torch.Tensor, bool_masked_pos: torch.Tensor | None, mask_token: nn.Parameter | None):
    """(batch, num_patches, hidden) tokens, `mask_token` where `bool_masked_pos` (batch, num_patches) is set."""
    if bool_masked_pos is None:
        return tokens
    if mask_token is None:
        raise ValueError(
            "`bool_masked_pos` needs a model with a mask token (the masked-image-modeling head, or a base model "
            "built with `use_mask_token=True`)."
        )
    if bool_masked_pos.shape != tokens.shape[:2]:
        raise ValueError(
            f"`bool_masked_pos` must have shape (batch, num_patches) = {tuple(tokens.shape[:2])}, "
            f"got {tuple(bool_masked_pos.shape)}."
        )
    mask = bool_masked_pos.unsqueeze(-1).type_as(tokens)
    return tokens * (1.0 - mask) + mask_token.expand_as(tokens) * mask


def simmim_decoder(hidden_size: int, stride: int, num_channels: int) -> nn.Sequential:
    """SimMIM's one-layer prediction head: a 1x1 conv to stride^2 x channels, then pixel shuffle up by stride."""
    return nn.Sequential(nn.Conv2d(hidden_size, stride**2 * num_channels, kernel_size=1), nn.PixelShuffle(stride))


def simmim_loss(pixel_values, reconstruction, bool_masked_pos, patch_size: tuple[int, int]) -> torch.Tensor:
    """The L1 error on the pixels of masked patches only, per channel (SimMIM Section 3)."""
    (patch_h, patch_w), (height, width) = patch_size, pixel_values.shape[-2:]
    pixel_mask = (
        bool_masked_pos.reshape(-1, 1, height // patch_h, width // patch_w)
        .repeat_interleave(patch_h, 2)
        .repeat_interleave(patch_w, 3)
        .to(reconstruction.dtype)
    )
    l1 = F.l1_loss(pixel_values.to(reconstruction.dtype), reconstruction, reduction="none")
    return (l1 * pixel_mask).sum() / (pixel_mask.sum() + 1e-5) / pixel_values.shape[1]


class ModelNamesLayout(PreTrainedModel):
    """`save_pretrained` under the module names: transformers' default writes its pre-5.0 key layout, from which
    `Trainer` cannot resume (a plain `load_state_dict`). Both load; `save_original_format=True` writes the old."""

    def save_pretrained(self, *args, save_original_format: bool = False, **kwargs):
        return super().save_pretrained(*args, save_original_format=save_original_format, **kwargs)
