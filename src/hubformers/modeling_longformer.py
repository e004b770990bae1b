"""Longformer: "Longformer: The Long-Document Transformer" (Beltagy et al., 2020,
https://arxiv.org/abs/2004.05150), a RoBERTa encoder whose self-attention costs time and memory linear in the
document length. This file holds the model in plain PyTorch: the embeddings, the layers' attention, the encoder
and pooler, and the heads.

Each token attends to a sliding window of W/2 neighbours on each side, spaced `attention_dilation` apart
(Section 3.1, Fig. 2b-c), plus the tokens marked global; global tokens attend to the whole sequence through
their own query/key/value projections (Section 3.1, "Linear Projections for Global Attention"). The heads
follow Section 6 (classification: the first token global; question answering: the question tokens global).

How the band is computed (no n x n tensor anywhere): the sequence is padded to whole units (the window, or
dilation x ceil(W / dilation) tokens), viewed as `dilation` interleaved strands (a dilated window is a plain
window within a strand), and each strand cut into query blocks (half a window without dilation); a block
attends to the keys of itself and its neighbours (an `unfold` view), with the global keys prepended, under an
additive mask that keeps the band. Heads of different dilations attend in groups, one per dilation. That is one
fused `scaled_dot_product_attention` over (blocks, heads) with 1.5 W keys per query.

Speed-only code plugs in through `modeling_common.FAST_PATHS` (longformer_fast_paths.py) and gives the same
outputs. Module and parameter names are transformers' own (`LongformerModel`), so folders written by
transformers (allenai/longformer-base-4096 on the Hub) load as they are, and ours load in transformers.
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import OutputRecorder, capture_outputs
from typing_extensions import Unpack

from .checks import (
    IGNORE_INDEX,
    check_indices,
    check_integers,
    check_requirements,
    classification_loss,
    indices_requirement,
)
from .configuration_longformer import LongformerConfig
from .modeling_common import FAST_PATHS, ModelNamesLayout, add_branch, is_static

# --- outputs ----------------------------------------------------------------------------------------------

# `attentions`: per layer (batch, heads, tokens, G + W + 1): each token's probabilities on the G global tokens
# (in position order), then on its window at relative offsets -W/2..W/2 (in steps of the dilation); a global
# token's row is zero (its probabilities are in `global_attentions`), as is a padding token's.
# `global_attentions`: per layer (batch, heads, tokens, G): the global tokens' probabilities on every token.


@dataclass
class LongformerModelOutput(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    global_attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class LongformerHeadOutput(ModelOutput):
    """Output of the masked-LM, sequence, token and multiple-choice heads."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    global_attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class LongformerQuestionAnsweringOutput(ModelOutput):
    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    global_attentions: tuple[torch.Tensor, ...] | None = None


# --- masks ------------------------------------------------------------------------------------------------


@dataclass
class AttentionMasks:
    """What every layer needs to know about the tokens, computed once per forward.

    is_masked / is_global: (batch, tokens) padding (attention_mask 0) / global tokens.
    key_bias: (batch, tokens) 0 where a token is a key of the sliding window, the dtype's minimum where it is
        padding or global (global keys are attended through their own column, never twice).
    global_index: (batch, G) positions of the global tokens, G the most in any row; rows with fewer are
        filled with other positions, whose `global_slot_bias` (batch, G) is the minimum instead of 0.
    global_slot: (batch, tokens) the column of each global token in `global_index`; G for padding.
    band_biases: the sliding-window attention's additive masks, built by the first layer of each (window,
        dilation) and shared by the others.
    window_counts: the windows of each unit the padded sequence holds (`windows_for`), shared the same way.
    """

    is_masked: torch.Tensor
    is_global: torch.Tensor
    key_bias: torch.Tensor
    global_index: torch.Tensor
    global_slot_bias: torch.Tensor
    global_slot: torch.Tensor
    band_biases: dict = field(default_factory=dict)
    window_counts: dict = field(default_factory=dict)

    @classmethod
    def build(cls, attention_mask: torch.Tensor, global_attention_mask: torch.Tensor, dtype: torch.dtype):
        is_masked = attention_mask == 0
        is_global = (global_attention_mask != 0) & ~is_masked
        lowest = torch.finfo(dtype).min
        key_bias = torch.zeros(is_masked.shape, dtype=dtype, device=is_masked.device)
        key_bias = key_bias.masked_fill(is_masked | is_global, lowest)
        counts = is_global.sum(-1)
        num_global = counts.max().item()  # a data-dependent size (never the length): unbacked under export
        torch._check(num_global >= 0)
        torch._check(num_global <= is_global.shape[1])
        # the global positions first, in position order: the smallest of distinct keys (no stable sort needed,
        # which ONNX lacks)
        positions = torch.arange(is_global.shape[1], device=is_global.device)
        order_keys = (~is_global).long() * is_global.shape[1] + positions
        global_index = torch.topk(order_keys, num_global, dim=-1, largest=False, sorted=True).indices
        slot_valid = torch.arange(num_global, device=counts.device) < counts[:, None]
        global_slot_bias = torch.zeros(slot_valid.shape, dtype=dtype, device=counts.device)
        global_slot_bias = global_slot_bias.masked_fill(~slot_valid, lowest)
        # padding tokens read slot G, a row of zeros after the global outputs (the attention output of padding)
        global_slot = (is_global.cumsum(-1) - 1).clamp(min=0).masked_fill(is_masked, num_global)
        return cls(is_masked, is_global, key_bias, global_index, global_slot_bias, global_slot)


def default_global_attention_mask(input_ids: torch.Tensor, sep_token_id: int, question: bool) -> torch.Tensor:
    """The paper's global tokens for question answering (`question=True`: the tokens before the first
    separator) and for multiple choice (`question=False`: the tokens after the first separator pair, as
    transformers marks them). Every row needs a separator (checked eagerly: in a compiler trace the branch
    would be data-dependent)."""
    is_sep = input_ids == sep_token_id
    if not torch.compiler.is_compiling() and not bool(is_sep.any(-1).all()):
        raise ValueError(
            f"A default global attention mask needs a separator token (sep_token_id={sep_token_id}) in every "
            "sequence, to find where the question ends; pass `global_attention_mask` otherwise."
        )
    first_sep = is_sep.int().argmax(-1, keepdim=True)
    positions = torch.arange(input_ids.shape[-1], device=input_ids.device)
    return positions < first_sep if question else positions > first_sep + 1


def check_mask_shape(name: str, mask: torch.Tensor | None, shape: torch.Size) -> None:
    if mask is not None and mask.shape != shape:
        raise ValueError(f"`{name}` must have the input's shape {tuple(shape)}, got {tuple(mask.shape)}.")


def input_shape(input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> torch.Size:
    if input_ids is None and inputs_embeds is None:
        raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds`, got neither.")
    return input_ids.shape if input_ids is not None else inputs_embeds.shape[:-1]


# --- embeddings -------------------------------------------------------------------------------------------


class LongformerEmbeddings(nn.Module):
    """Word + position + token type embeddings, LayerNorm, dropout. RoBERTa's positions count the
    non-padding tokens from `pad_token_id + 1`; padding tokens sit at `pad_token_id`."""

    def __init__(self, config: LongformerConfig):
        super().__init__()
        self.padding_idx = config.pad_token_id
        self.max_input_length = config.max_input_length
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def position_ids(self, input_ids: torch.Tensor | None, shape: torch.Size, device: torch.device) -> torch.Tensor:
        if input_ids is not None:
            not_pad = input_ids.ne(self.padding_idx).long()
            return torch.cumsum(not_pad, dim=1) * not_pad + self.padding_idx
        positions = torch.arange(shape[1], device=device) + self.padding_idx + 1
        return positions.expand(shape)

    def forward(self, input_ids, token_type_ids=None, position_ids=None, inputs_embeds=None) -> torch.Tensor:
        shape = input_ids.shape if input_ids is not None else inputs_embeds.shape[:-1]
        if shape[1] > self.max_input_length:
            raise ValueError(
                f"Sequences may have at most {self.max_input_length} tokens (the position table has "
                f"{self.max_input_length + self.padding_idx + 1} rows, RoBERTa-style), got {shape[1]}."
            )
        device = input_ids.device if input_ids is not None else inputs_embeds.device
        if position_ids is None:
            position_ids = self.position_ids(input_ids, shape, device)
        if token_type_ids is None:
            token_type_ids = torch.zeros(shape, dtype=torch.long, device=device)
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        embeddings = inputs_embeds + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))


# --- attention --------------------------------------------------------------------------------------------


class BandLayout:
    """How the band of one (window, dilation) is cut up. The sequence is padded to whole units of `unit` =
    dilation x `strand_window` tokens (strand_window = ceil(W / dilation), so the unit is the window when the
    dilation divides it) and viewed as `dilation` interleaved strands, in which the dilated window is a plain
    one of W/2 neighbours on each side. A strand is cut into query blocks of `block` tokens, each attending to
    the `window_keys` keys of itself and of `reach` blocks on each side."""

    def __init__(self, window: int, dilation: int):
        self.window, self.dilation = window, dilation
        self.one_sided = window // 2
        self.strand_window = -(-window // dilation)
        self.unit = dilation * self.strand_window
        self.block = self.block_size()
        self.reach = math.ceil(self.one_sided / self.block)  # neighbour blocks on each side
        self.window_keys = (2 * self.reach + 1) * self.block

    def block_size(self) -> int:
        """The largest divisor of `strand_window` (so that blocks tile the padded strand) not above half the
        window, so that a block reads the keys of its two neighbouring blocks (the band's W + 1 keys within
        1.5 W, without dilation). Smaller blocks waste fewer keys outside the band but copy more windows of keys
        (each key is read by 2 W / block + 1 blocks), which costs more than it saves on CPUs."""
        size = self.strand_window
        return max(b for b in range(1, size + 1) if size % b == 0 and b <= max(1, self.one_sided))

    def band(self, device: torch.device) -> torch.Tensor:
        """(block, keys) bool: which keys of a block's window lie in the band. Query a of the block and key j
        of its window are j - reach * block - a apart in the strand."""
        keys = torch.arange(self.window_keys, device=device) - self.reach * self.block
        return (keys[None, :] - torch.arange(self.block, device=device)[:, None]).abs() <= self.one_sided


@dataclass(frozen=True)
class Band:
    """One call's band: a `BandLayout` over `num_tokens` tokens padded to `num_windows` units."""

    layout: BandLayout
    num_tokens: int
    num_windows: int

    @property
    def padded(self):
        return self.num_windows * self.layout.unit

    @property
    def num_blocks(self):
        """Query blocks per strand."""
        return self.num_windows * (self.layout.strand_window // self.layout.block)

    @property
    def margin(self):
        """Tokens in front of the keys: `reach` blocks of every strand (behind them too, plus the padding)."""
        return self.layout.reach * self.layout.block * self.layout.dilation

    @property
    def margin_length(self):
        """A strand of the keys with both margins."""
        return self.num_windows * self.layout.strand_window + 2 * self.layout.reach * self.layout.block


def windows_for(num_tokens: int, window: int) -> int:
    """ceil(num_tokens / window), the windows the padded sequence holds. Under `torch.export` the count comes
    from a tensor, as an unbacked size that carries its bounds as checks: the exporter cannot prove facts such
    as `window * ceil(n / window) >= n` from a floor division, and would otherwise pin the length."""
    num_windows = ((torch.tensor(num_tokens) + window - 1) // window).item()
    torch._check(num_windows >= 1)
    torch._check(num_windows * window >= num_tokens)
    torch._check(num_windows * window < num_tokens + window)
    return num_windows


def band_of(layout: BandLayout, masks: AttentionMasks, num_tokens: int) -> Band:
    """The band of this forward: one window count per unit (under export each count is an unbacked size, and
    layers that share a band mask must share its size)."""
    if layout.unit not in masks.window_counts:
        masks.window_counts[layout.unit] = windows_for(num_tokens, layout.unit)
    return Band(layout, num_tokens, masks.window_counts[layout.unit])


def pad_tokens(x: torch.Tensor, before, after) -> torch.Tensor:
    """(batch, tokens, ...) with `before` and `after` zero tokens around: F.pad writes zeros everywhere, then
    the copy; this writes each value once (the copy is the larger part at 4,096 tokens)."""
    num_tokens = x.shape[1]
    padded = x.new_empty(x.shape[0], before + num_tokens + after, *x.shape[2:])
    padded[:, :before].zero_()
    padded[:, before + num_tokens :].zero_()
    padded[:, before : before + num_tokens] = x
    return padded


def padded_queries(query: torch.Tensor, band: Band) -> torch.Tensor:
    """(batch, tokens, heads, dim) -> (batch, padded, heads, dim), zeros at the end."""
    padding = band.padded - band.num_tokens
    return query if is_static(padding) and padding == 0 else F.pad(query, (0, 0, 0, 0, 0, padding))


def query_blocks(x: torch.Tensor, band: Band, head_major: bool = False) -> torch.Tensor:
    """(batch, padded, heads, dim), or (batch, heads, padded, dim) if `head_major`, -> (batch, dilation, blocks,
    heads, block, dim), a view: token t of the padded sequence is token t // dilation of strand t % dilation."""
    dilation, block, num_blocks = band.layout.dilation, band.layout.block, band.num_blocks
    if head_major:
        batch_size, num_heads = x.shape[:2]
        x = x.view(batch_size, num_heads, num_blocks, block, dilation, x.shape[-1])
        return x.permute(0, 4, 2, 1, 3, 5)
    batch_size, num_heads = x.shape[0], x.shape[2]
    x = x.view(batch_size, num_blocks, block, dilation, num_heads, x.shape[-1])
    return x.permute(0, 3, 1, 4, 2, 5)


def key_windows(x: torch.Tensor, band: Band) -> torch.Tensor:
    """(batch, tokens, heads, dim) -> (batch, dilation, blocks, heads, keys, dim), a view of the keys (or
    values) with their margins: the window of a block is its own keys and those of `reach` blocks each side."""
    layout, margin = band.layout, band.margin
    x = pad_tokens(x, margin, margin + band.padded - band.num_tokens)
    # (batch, padded + margins, heads, dim) -> (batch, dilation, heads, strand, dim)
    x = x.view(x.shape[0], band.margin_length, layout.dilation, *x.shape[2:]).permute(0, 2, 3, 1, 4)
    # -> (batch, dilation, heads, blocks, dim, keys) -> (batch, dilation, blocks, heads, keys, dim)
    return x.unfold(3, layout.window_keys, layout.block).transpose(-1, -2).transpose(2, 3)


def bias_windows(key_bias: torch.Tensor, band: Band) -> torch.Tensor:
    """(batch, tokens) -> (batch, dilation, blocks, keys): `key_windows` of an additive mask, the margins
    masked."""
    layout, margin = band.layout, band.margin
    x = F.pad(key_bias, (margin, margin + band.padded - band.num_tokens), value=torch.finfo(key_bias.dtype).min)
    # (batch, padded + margins) -> (batch, dilation, strand) -> (batch, dilation, blocks, keys)
    x = x.view(x.shape[0], band.margin_length, layout.dilation).transpose(1, 2)
    return x.unfold(2, layout.window_keys, layout.block)


def band_bias(masks: AttentionMasks, band: Band) -> torch.Tensor:
    """(batch, dilation, blocks, block, G + keys): the additive mask of each block's keys, the global slots'
    (`global_slot_bias`) then the window's (the key's own bias inside the band, the minimum outside)."""
    windows = bias_windows(masks.key_bias, band)[..., None, :]
    window_bias = torch.where(band.layout.band(windows.device), windows, torch.finfo(windows.dtype).min)
    slot_bias = masks.global_slot_bias[:, None, None, None, :].expand(*window_bias.shape[:-1], -1)
    return torch.cat([slot_bias, window_bias], dim=-1)


def shared_band_bias(masks: AttentionMasks, window: int, band: Band) -> torch.Tensor:
    """`band_bias`, built by the first layer of each (window, dilation) and shared by the others."""
    key = (window, band.layout.dilation)
    if key not in masks.band_biases:
        masks.band_biases[key] = band_bias(masks, band)
    return masks.band_biases[key]


def gather_global(key: torch.Tensor, value: torch.Tensor, global_index: torch.Tensor):
    """Keys and values of the global tokens: (batch, G, heads, dim) each."""
    index = global_index[:, :, None, None].expand(-1, -1, *key.shape[2:])
    return key.gather(1, index), value.gather(1, index)


def block_bytes(blocks: torch.Tensor, num_global: int, window_keys: int) -> int:
    """The bytes of the keys and values of one block of every strand and row, for (batch, dilation, blocks,
    heads, block, dim) query `blocks`: what a block's attention takes besides its queries."""
    batch_size, dilation, _, num_heads, _, head_dim = blocks.shape
    return 2 * batch_size * dilation * num_heads * (num_global + window_keys) * head_dim * blocks.element_size()


def attend_blocks(query, window_key, window_value, bias, global_key, global_value, dropout: float, need_weights: bool):
    """Blocks (batch, dilation, blocks, ...) of queries (heads, block, dim), window keys and values (heads,
    keys, dim) and additive masks (block, G + keys), with the global keys and values (batch, 1, 1, heads, G,
    dim) -> (batch, dilation, blocks, heads, block, dim) context, and if asked the probabilities (batch *
    dilation * blocks, heads, block, G + keys). Each block attends to the global keys, then its window."""
    shape = (*window_key.shape[:4], global_key.shape[-2], window_key.shape[-1])
    # (batch * dilation * blocks, heads, G + keys, dim)
    keys = torch.cat([global_key.expand(shape), window_key], dim=-2).flatten(0, 2)
    values = torch.cat([global_value.expand(shape), window_value], dim=-2).flatten(0, 2)
    bias = bias.flatten(0, 2).unsqueeze(1)  # (batch * dilation * blocks, 1, block, G + keys)
    query = query.flatten(0, 2)
    if not need_weights:
        context = F.scaled_dot_product_attention(query, keys, values, bias, dropout_p=dropout, scale=1.0)
        return context.unflatten(0, shape[:3]), None
    probs = torch.softmax(query @ keys.transpose(-1, -2) + bias, dim=-1, dtype=torch.float32).to(query.dtype)
    return (F.dropout(probs, dropout, dropout > 0.0) @ values).unflatten(0, shape[:3]), probs


def attend_band(query, windows, bias, global_kv, band: Band, dropout: float, need_weights: bool):
    """Every padded query (batch, padded, heads, dim) on the global keys and its window: `attend_blocks` on
    the blocks, which are independent (`FAST_PATHS.slices` along them, unless the probabilities are asked for)."""
    # (batch, G, heads, dim) -> (batch, 1, 1, heads, G, dim), to expand over the blocks of each strand
    global_key, global_value = (x.transpose(1, 2)[:, None, None] for x in global_kv)
    blocks = query_blocks(query, band)
    if need_weights:
        return attend_blocks(blocks, *windows, bias, global_key, global_value, dropout, True)
    context = FAST_PATHS.slices(
        lambda *chunk: attend_blocks(*chunk, global_key, global_value, dropout, False)[0],
        (blocks, *windows, bias),
        2,
        block_bytes(blocks, global_key.shape[-2], band.layout.window_keys),
    )
    return context, None


def token_context(context: torch.Tensor, band: Band) -> torch.Tensor:
    """(batch, dilation, blocks, heads, block, dim) -> (batch, tokens, heads * dim), the padding dropped."""
    batch_size, num_heads, head_dim = context.shape[0], context.shape[3], context.shape[5]
    context = context.permute(0, 2, 4, 1, 3, 5).reshape(batch_size, band.padded, num_heads * head_dim)
    return context[:, : band.num_tokens]


def band_probabilities(probs, masks: AttentionMasks, band: Band, num_global: int) -> torch.Tensor:
    """(batch * dilation * blocks, heads, block, G + keys) -> (batch, heads, tokens, G + W + 1): the window
    columns re-indexed by relative offset, as transformers lays them out."""
    (batch_size, num_tokens), num_heads, layout = masks.is_global.shape, probs.shape[1], band.layout
    # key column of offset k for query a: reach * block + a + k
    columns = (
        layout.reach * layout.block
        + torch.arange(layout.block, device=probs.device)[:, None]
        + torch.arange(-layout.one_sided, layout.one_sided + 1, device=probs.device)
    )
    local = probs[..., num_global:].gather(-1, columns.expand(*probs.shape[:2], -1, -1))
    probs = torch.cat([probs[..., :num_global], local], dim=-1)
    # (batch, dilation, blocks, heads, block, G + W + 1) -> (batch, heads, padded, G + W + 1)
    probs = probs.view(batch_size, layout.dilation, band.num_blocks, num_heads, layout.block, -1)
    probs = probs.permute(0, 3, 2, 4, 1, 5).reshape(batch_size, num_heads, band.padded, -1)
    probs = probs[:, :, :num_tokens]
    return probs.masked_fill((masks.is_masked | masks.is_global)[:, None, :, None], 0.0)


def key_without_bias_parameter(hidden_size: int) -> nn.Linear:
    """The global keys' projection, its bias a buffer: a bias b adds q . b to all the scores of a global query
    q, which softmax ignores, so it never changes an output nor gets a gradient (a parameter of it would be dead
    to optimizers and DDP). As a buffer it keeps its name in the state dict, so transformers' checkpoints, which
    have it, load as they are, and ours load in transformers."""
    layer = nn.Linear(hidden_size, hidden_size, bias=False)
    del layer.bias
    layer.register_buffer("bias", torch.zeros(hidden_size))
    return layer


class LongformerSelfAttention(nn.Module):
    """Sliding-window (optionally dilated) attention plus global attention, for one layer."""

    def __init__(self, config: LongformerConfig, layer_id: int):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.window = config.attention_window[layer_id]
        dilation = config.attention_dilation[layer_id]
        self.dilations = tuple(dilation) if isinstance(dilation, list) else (dilation,) * self.num_heads
        # heads that share a dilation attend together: (layout, their heads), and where there are several groups,
        # the order that puts the heads of the concatenated groups back in place
        self.head_groups = [
            (BandLayout(self.window, d), [h for h in range(self.num_heads) if self.dilations[h] == d])
            for d in sorted(set(self.dilations))
        ]
        grouped = [h for _, heads in self.head_groups for h in heads]
        self.head_order = [grouped.index(h) for h in range(self.num_heads)]
        self.dropout = config.attention_probs_dropout_prob
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.query_global = nn.Linear(config.hidden_size, config.hidden_size)
        self.key_global = key_without_bias_parameter(config.hidden_size)
        self.value_global = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, masks: AttentionMasks, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        batch_size, num_tokens, hidden_size = hidden_states.shape
        need_weights = kwargs.get("output_attentions", self.config.output_attentions)
        scaling = self.head_dim**-0.5
        # (batch, tokens, hidden) -> (batch, tokens, heads, head_dim)
        query = (FAST_PATHS.linear(self.query, hidden_states) * scaling).view(
            batch_size, num_tokens, self.num_heads, self.head_dim
        )
        key = FAST_PATHS.linear(self.key, hidden_states).view(batch_size, num_tokens, self.num_heads, self.head_dim)
        value = FAST_PATHS.linear(self.value, hidden_states).view(batch_size, num_tokens, self.num_heads, self.head_dim)

        context, local_probs = self.windowed_attention(query, key, value, masks, need_weights)
        global_context, global_probs = self.global_attention(hidden_states, masks)
        # global tokens take the output of their own full attention, padding tokens zeros (a zero row appended)
        global_context = F.pad(global_context, (0, 0, 0, 1))
        global_context = global_context.gather(1, masks.global_slot[..., None].expand(-1, -1, hidden_size))
        context = torch.where((masks.is_global | masks.is_masked)[..., None], global_context, context)
        if not need_weights:
            return context, None, None
        # (batch, heads, G, tokens) -> (batch, heads, tokens, G); the filler slots of rows with fewer global
        # tokens are zero
        global_probs = global_probs * (masks.global_slot_bias == 0)[:, None, :, None]
        return context, local_probs, global_probs.transpose(2, 3)

    def windowed_attention(
        self, query, key, value, masks: AttentionMasks, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every token on its window and on the global keys: `band_attention` for each group of heads that share
        a dilation, the heads put back in order."""
        if len(self.head_groups) == 1:
            return self.band_attention(query, key, value, masks, need_weights, self.head_groups[0][0])
        outputs = [
            self.band_attention(query[:, :, heads], key[:, :, heads], value[:, :, heads], masks, need_weights, layout)
            for layout, heads in self.head_groups
        ]
        batch_size, num_tokens = query.shape[:2]
        context = torch.cat([c.view(batch_size, num_tokens, -1, self.head_dim) for c, _ in outputs], dim=2)
        context = context[:, :, self.head_order].flatten(2)
        return context, torch.cat([p for _, p in outputs], dim=1)[:, self.head_order] if need_weights else None

    def band_attention(
        self, query, key, value, masks: AttentionMasks, need_weights: bool, layout: BandLayout
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Heads of one dilation (`layout`), every token on its window and on the global keys (projected like
        the others): (batch, tokens, heads, head_dim) in, (batch, tokens, heads * head_dim) out (padding tokens'
        rows are for the caller to zero), plus the probabilities in the layout of `attentions` if asked. A
        replacement "longformer_band" may compute the context instead."""
        band = band_of(layout, masks, query.shape[1])
        query = padded_queries(query, band)
        windows = key_windows(key, band), key_windows(value, band)
        bias = shared_band_bias(masks, self.window, band)
        global_kv = gather_global(key, value, masks.global_index)
        dropout = self.dropout if self.training else 0.0
        context = FAST_PATHS.replaced(
            "longformer_band", query, windows, bias, global_kv, masks, band, dropout, need_weights
        )
        probs = None
        if context is None:
            context, probs = attend_band(query, windows, bias, global_kv, band, dropout, need_weights)
        context = token_context(context, band)
        if not need_weights:
            return context, None
        return context, band_probabilities(probs, masks, band, global_kv[0].shape[1])

    def global_attention(self, hidden_states, masks: AttentionMasks) -> tuple[torch.Tensor, torch.Tensor]:
        """The global tokens on every token, through the global projections: context (batch, G, hidden) and
        probabilities (batch, heads, G, tokens). A replacement "longformer_global" may compute them instead."""
        fast = FAST_PATHS.replaced("longformer_global", self, hidden_states, masks)
        if fast is not None:
            return fast
        batch_size, num_tokens, hidden_size = hidden_states.shape
        query = self.global_queries(hidden_states, masks)
        key = FAST_PATHS.linear(self.key_global, hidden_states).view(
            batch_size, num_tokens, self.num_heads, self.head_dim
        )
        probs, dropped = self.global_probabilities(torch.einsum("bghd,bnhd->bhgn", query, key), masks)
        value = FAST_PATHS.linear(self.value_global, hidden_states).view(
            batch_size, num_tokens, self.num_heads, self.head_dim
        )
        context = torch.einsum("bhgn,bnhd->bghd", dropped, value)
        return context.reshape(batch_size, query.shape[1], hidden_size), probs

    def global_queries(self, hidden_states, masks: AttentionMasks) -> torch.Tensor:
        """The global tokens' scaled queries: (batch, tokens, hidden) -> (batch, G, heads, head_dim)."""
        index = masks.global_index[..., None].expand(-1, -1, hidden_states.shape[-1])
        global_states = hidden_states.gather(1, index)  # (batch, G, hidden)
        query = FAST_PATHS.linear(self.query_global, global_states) * self.head_dim**-0.5
        return query.view(*global_states.shape[:2], self.num_heads, self.head_dim)

    def global_probabilities(self, scores, masks: AttentionMasks) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, heads, G, tokens) scores -> the probabilities on the keys that are not padding, and the same
        after dropout."""
        scores = scores + masks.key_bias.masked_fill(masks.is_global, 0.0)[:, None, None, :]
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(scores.dtype)
        return probs, F.dropout(probs, self.dropout if self.training else 0.0, self.training)


class LongformerResidualOutput(nn.Module):
    """Dense, dropout, then LayerNorm of the residual sum (post-norm, as in BERT/RoBERTa)."""

    def __init__(self, config: LongformerConfig, in_features: int):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(add_branch(self.dense, hidden_states, residual, self.dropout))


class LongformerAttention(nn.Module):
    def __init__(self, config: LongformerConfig, layer_id: int):
        super().__init__()
        self.self = LongformerSelfAttention(config, layer_id)
        self.output = LongformerResidualOutput(config, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, masks: AttentionMasks, **kwargs) -> torch.Tensor:
        attended, _, _ = self.self(hidden_states, masks, **kwargs)
        return self.output(attended, hidden_states)


class LongformerIntermediate(nn.Module):
    def __init__(self, config: LongformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return FAST_PATHS.linear(self.dense, hidden_states, activation=self.intermediate_act_fn)


class LongformerLayer(GradientCheckpointingLayer):
    """Attention then MLP, each followed by a residual LayerNorm."""

    def __init__(self, config: LongformerConfig, layer_id: int):
        super().__init__()
        self.attention = LongformerAttention(config, layer_id)
        self.intermediate = LongformerIntermediate(config)
        self.output = LongformerResidualOutput(config, config.intermediate_size)

    def forward(self, hidden_states: torch.Tensor, masks: AttentionMasks, **kwargs) -> torch.Tensor:
        attended = self.attention(hidden_states, masks, **kwargs)
        return FAST_PATHS.rows(self.feed_forward, attended, self.intermediate.dense.out_features)

    def feed_forward(self, attended: torch.Tensor) -> torch.Tensor:
        return self.output(self.intermediate(attended), attended)


class LongformerEncoder(nn.Module):
    def __init__(self, config: LongformerConfig):
        super().__init__()
        self.layer = nn.ModuleList([LongformerLayer(config, i) for i in range(config.num_hidden_layers)])

    def forward(self, hidden_states: torch.Tensor, masks: AttentionMasks, **kwargs) -> torch.Tensor:
        for layer in self.layer:
            hidden_states = layer(hidden_states, masks, **kwargs)
        return hidden_states


class LongformerPooler(nn.Module):
    """Dense + tanh on the first token."""

    def __init__(self, config: LongformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden_states[:, 0]))


# --- models -----------------------------------------------------------------------------------------------


class LongformerPreTrainedModel(ModelNamesLayout):
    config_class = LongformerConfig
    base_model_prefix = "longformer"
    main_input_name = "input_ids"
    input_modalities = ("text",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["LongformerLayer"]
    _can_record_outputs = {
        "hidden_states": LongformerLayer,
        "attentions": OutputRecorder(LongformerSelfAttention, index=1),
        "global_attentions": OutputRecorder(LongformerSelfAttention, index=2),
    }

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, LongformerLMHead):
            init.zeros_(module.bias)


class LongformerModel(LongformerPreTrainedModel):
    """Embeddings, `num_hidden_layers` Longformer layers and an optional pooler. `global_attention_mask`
    (1 = global) marks the tokens that attend to, and are attended by, every token; none by default."""

    def __init__(self, config: LongformerConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = LongformerEmbeddings(config)
        self.encoder = LongformerEncoder(config)
        self.pooler = LongformerPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> LongformerModelOutput:
        # global probabilities are recorded whenever the local ones are
        kwargs["output_global_attentions"] = kwargs.get("output_attentions", self.config.output_attentions)
        return self.encode(
            input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs
        )

    def check_inputs(
        self, input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids, inputs_embeds
    ) -> None:
        """Shapes, and the indices against the embedding tables, before anything runs."""
        if input_ids is not None and inputs_embeds is not None:
            raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds`, not both.")
        if input_ids is not None:
            name, shape, expected = "input_ids", input_ids.shape, (2, "(batch, tokens)")
        else:
            hidden_size = self.config.hidden_size
            name, shape, expected = "inputs_embeds", inputs_embeds.shape, (3, f"(batch, tokens, {hidden_size})")
        if len(shape) != expected[0] or (inputs_embeds is not None and shape[-1] != self.config.hidden_size):
            raise ValueError(f"`{name}` must have shape {expected[1]}, got {tuple(shape)}.")
        if shape[0] == 0 or shape[1] == 0:
            raise ValueError(
                f"`{name}` must hold at least one sequence of at least one token, got shape {tuple(shape)}."
            )
        shape = shape[:2]
        for mask_name, mask in [
            ("attention_mask", attention_mask),
            ("global_attention_mask", global_attention_mask),
            ("token_type_ids", token_type_ids),
            ("position_ids", position_ids),
        ]:
            check_mask_shape(mask_name, mask, shape)
        config, rows = self.config, self.config.max_position_embeddings
        tables = [
            ("input_ids", input_ids, config.vocab_size, f"config.vocab_size={config.vocab_size}"),
            (
                "token_type_ids",
                token_type_ids,
                config.type_vocab_size,
                f"config.type_vocab_size={config.type_vocab_size}",
            ),
            ("position_ids", position_ids, rows, f"the position table, config.max_position_embeddings={rows}"),
        ]
        for name, values, _, _ in tables:
            check_integers(name, values)
        check_requirements(*(indices_requirement(*table) for table in tables if table[1] is not None))

    @capture_outputs
    def encode(
        self, input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs
    ) -> LongformerModelOutput:
        shape = input_shape(input_ids, inputs_embeds)
        self.check_inputs(input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids, inputs_embeds)
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        if attention_mask is None:
            attention_mask = torch.ones(shape, dtype=torch.long, device=hidden_states.device)
        if global_attention_mask is None:
            global_attention_mask = torch.zeros(shape, dtype=torch.long, device=hidden_states.device)
        masks = AttentionMasks.build(attention_mask, global_attention_mask, hidden_states.dtype)
        hidden_states = self.encoder(hidden_states, masks, **kwargs)
        pooled = self.pooler(hidden_states) if self.pooler is not None else None
        return LongformerModelOutput(last_hidden_state=hidden_states, pooler_output=pooled)


class LongformerLMHead(nn.Module):
    """Dense, GELU, LayerNorm, then the (tied) decoder onto the vocabulary."""

    def __init__(self, config: LongformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(F.gelu(self.dense(features))))


class LongformerClassificationHead(nn.Module):
    """Dense + tanh + linear on the first token (RoBERTa's sentence head)."""

    def __init__(self, config: LongformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.dense(self.dropout(hidden_states[:, 0])))
        return self.out_proj(self.dropout(hidden))


def head_output(outputs: LongformerModelOutput, **fields) -> LongformerHeadOutput:
    return LongformerHeadOutput(
        **fields,
        hidden_states=outputs.hidden_states,
        attentions=outputs.attentions,
        global_attentions=outputs.global_attentions,
    )


def check_token_labels(labels: torch.Tensor, shape: torch.Size, num_classes: int, field: str) -> None:
    """One class id per token (`IGNORE_INDEX` for tokens left out of the loss), checked before the forward."""
    if labels.shape != shape or labels.is_floating_point():
        raise ValueError(
            f"`labels` must be integer ids of the input's shape {tuple(shape)}, "
            f"got {labels.dtype} of shape {tuple(labels.shape)}."
        )
    check_indices("labels", labels, num_classes, field, IGNORE_INDEX)


class LongformerForMaskedLM(LongformerPreTrainedModel):
    """Masked language modelling: the loss is the cross-entropy on the tokens whose label is not -100."""

    _tied_weights_keys = {
        "lm_head.decoder.weight": "longformer.embeddings.word_embeddings.weight",
        "lm_head.decoder.bias": "lm_head.bias",
    }

    def __init__(self, config: LongformerConfig):
        super().__init__(config)
        self.longformer = LongformerModel(config, add_pooling_layer=False)
        self.lm_head = LongformerLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.lm_head.decoder = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> LongformerHeadOutput:
        vocab_size = self.config.vocab_size
        if labels is not None:
            check_token_labels(labels, input_shape(input_ids, inputs_embeds), vocab_size, f"vocab_size={vocab_size}")
        outputs = self.longformer(
            input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs
        )
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, vocab_size=vocab_size, **kwargs)
        return head_output(outputs, loss=loss, logits=logits)


class LongformerForSequenceClassification(LongformerPreTrainedModel):
    """RoBERTa's head on the first token, which is global by default (paper Section 6). The loss follows
    `config.problem_type` (single-label, multi-label or regression), as in transformers."""

    def __init__(self, config: LongformerConfig):
        super().__init__(config)
        self.longformer = LongformerModel(config, add_pooling_layer=False)
        self.classifier = LongformerClassificationHead(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> LongformerHeadOutput:
        if global_attention_mask is None:
            device = input_ids.device if input_ids is not None else inputs_embeds.device
            global_attention_mask = torch.zeros(input_shape(input_ids, inputs_embeds), dtype=torch.long, device=device)
            global_attention_mask[:, :1] = 1
        outputs = self.longformer(
            input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs
        )
        logits = self.classifier(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = classification_loss(self, labels, logits, **kwargs)
        return head_output(outputs, loss=loss, logits=logits)


class LongformerForTokenClassification(LongformerPreTrainedModel):
    """A linear layer on every token; cross-entropy on the tokens whose label is not -100."""

    def __init__(self, config: LongformerConfig):
        super().__init__(config)
        self.longformer = LongformerModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> LongformerHeadOutput:
        num_labels = self.config.num_labels
        if labels is not None:
            check_token_labels(labels, input_shape(input_ids, inputs_embeds), num_labels, f"num_labels={num_labels}")
        outputs = self.longformer(
            input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, self.config, **kwargs)
        return head_output(outputs, loss=loss, logits=logits)


class LongformerForQuestionAnswering(LongformerPreTrainedModel):
    """Span start/end logits per token; the question (the tokens before the first separator) is global by
    default (paper Section 6). The loss averages the start and end cross-entropies; positions beyond the
    sequence are clamped to its length and left out, as in transformers."""

    def __init__(self, config: LongformerConfig):
        super().__init__(config)
        self.longformer = LongformerModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> LongformerQuestionAnsweringOutput:
        if (start_positions is None) != (end_positions is None):
            given = "start_positions" if end_positions is None else "end_positions"
            raise ValueError(
                f"A loss needs both `start_positions` and `end_positions` (or neither), got only `{given}`."
            )
        if global_attention_mask is None and input_ids is not None:
            global_attention_mask = default_global_attention_mask(input_ids, self.config.sep_token_id, question=True)
        outputs = self.longformer(
            input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs
        )
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).split(1, dim=-1)
        start_logits, end_logits = start_logits.squeeze(-1).contiguous(), end_logits.squeeze(-1).contiguous()
        loss = None
        if start_positions is not None:
            loss = self.loss_function(start_logits, end_logits, start_positions, end_positions, **kwargs)
        return LongformerQuestionAnsweringOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            global_attentions=outputs.global_attentions,
        )


class LongformerForMultipleChoice(LongformerPreTrainedModel):
    """Each (batch, choice) sequence through the encoder and pooler, one score per choice; by default the
    tokens after the first separator pair (the candidate) are global, as in transformers."""

    def __init__(self, config: LongformerConfig):
        super().__init__(config)
        self.longformer = LongformerModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> LongformerHeadOutput:
        """The arguments in transformers' order (token type ids second), tensors of shape (batch, choices, tokens)."""
        inputs = input_ids if input_ids is not None else inputs_embeds
        if inputs is None or inputs.ndim != 3 + (input_ids is None):
            shape = None if inputs is None else tuple(inputs.shape)
            raise ValueError(f"`input_ids` must have shape (batch, choices, tokens), got {shape}.")
        batch_size, num_choices = inputs.shape[:2]
        for name, mask in [
            ("attention_mask", attention_mask),
            ("global_attention_mask", global_attention_mask),
            ("token_type_ids", token_type_ids),
            ("position_ids", position_ids),
        ]:
            check_mask_shape(name, mask, inputs.shape[:3])
        if labels is not None:
            if labels.shape != (batch_size,) or labels.is_floating_point():
                raise ValueError(
                    f"`labels` must be integer ids of shape ({batch_size},), got {labels.dtype} of shape "
                    f"{tuple(labels.shape)}."
                )
            check_indices("labels", labels, num_choices, f"the {num_choices} choices", IGNORE_INDEX)
        if global_attention_mask is None and input_ids is not None:
            global_attention_mask = default_global_attention_mask(input_ids, self.config.sep_token_id, question=False)

        def flat(x):  # (batch, choices, tokens, ...) -> (batch * choices, tokens, ...)
            return x.flatten(0, 1) if x is not None else None

        outputs = self.longformer(
            flat(input_ids),
            flat(attention_mask),
            flat(global_attention_mask),
            flat(token_type_ids),
            flat(position_ids),
            flat(inputs_embeds),
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output)).view(-1, num_choices)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return head_output(outputs, loss=loss, logits=logits)


__all__ = [
    "LongformerForMaskedLM",
    "LongformerForMultipleChoice",
    "LongformerForQuestionAnswering",
    "LongformerForSequenceClassification",
    "LongformerForTokenClassification",
    "LongformerModel",
    "LongformerPreTrainedModel",
]
