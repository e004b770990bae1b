"""Longformer's speed-only attention steps, registered in `modeling_common.FAST_PATHS.attention` by
`fast_paths.install()`; each gives modeling_longformer.py's plain result to float32 rounding, and returns None
for the calls it does not serve.

- "longformer_global" (`global_attention`): the global queries' scores against every token as (W_k^T q) . h
  instead of q . (W_k h + b), and the context as W_v (sum_j p_j h_j) + b_v sum_j p_j: no token is projected a
  second time. The key bias adds a constant along each row of scores, which softmax ignores. Served where the
  global key and value projections are plain `nn.Linear` (an adapter or a hooked layer runs its own forward).
- "longformer_band" (`band_attention`): in eager inference on CPU, the window through the flash kernel, which
  reads the overlapping windows of keys and values in place (the plain path copies them, with the global keys
  prepended, for every block) and returns its log-sum-exp; every query's attention on the few global keys,
  computed at once, is merged in by the two log-sum-exps. Not with gradients (the kernel's log-sum-exp has
  none), dropout or attention maps, nor in compiler traces (a log-sum-exp over a data-dependent number of global
  keys, maybe none, would need a guard).
"""

import torch

from .fused_linear import is_plain_linear
from .modeling_common import FAST_PATHS
from .modeling_longformer import AttentionMasks, Band, block_bytes, query_blocks


def global_attention(module, hidden_states: torch.Tensor, masks: AttentionMasks):
    """`LongformerSelfAttention.global_attention` without projecting the tokens: context (batch, G, hidden) and
    probabilities (batch, heads, G, tokens); None unless both global projections are plain `nn.Linear`."""
    if not (is_plain_linear(module.key_global) and is_plain_linear(module.value_global)):
        return None
    batch_size, num_tokens, hidden_size = hidden_states.shape
    num_heads, head_dim = module.num_heads, module.head_dim
    query = module.global_queries(hidden_states, masks)  # (batch, G, heads, head_dim)
    num_global = query.shape[1]
    key_weight, value_weight = (
        p.weight.view(num_heads, head_dim, hidden_size) for p in (module.key_global, module.value_global)
    )
    query_in_hidden = torch.einsum("bghd,hde->bhge", query, key_weight)  # (batch, heads, G, hidden)
    scores = query_in_hidden.flatten(1, 2) @ hidden_states.transpose(1, 2)  # (batch, heads * G, tokens)
    probs, dropped = module.global_probabilities(scores.view(batch_size, num_heads, num_global, num_tokens), masks)
    # (batch, heads * G, tokens) @ (batch, tokens, hidden) -> (batch, heads, G, hidden)
    mixed = (dropped.flatten(1, 2) @ hidden_states).view(batch_size, num_heads, num_global, hidden_size)
    context = torch.einsum("bhge,hde->bghd", mixed, value_weight)
    value_bias = module.value_global.bias.view(num_heads, head_dim)
    context = context + dropped.sum(-1).transpose(1, 2)[..., None] * value_bias
    return context.reshape(batch_size, num_global, hidden_size), probs


def band_attention(query, windows, bias, global_kv, masks: AttentionMasks, band: Band, dropout, need_weights):
    """The context of `attend_band` (batch, dilation, blocks, heads, block, dim) for padded queries (batch,
    padded, heads, dim), the (keys, values) windows, the band bias and the global (keys, values) (batch, G,
    heads, dim), merging the global keys in by log-sum-exp; None off the CPU, with gradients, dropout or
    attention maps, and in compiler traces."""
    if (
        query.device.type != "cpu"
        or need_weights
        or torch.is_grad_enabled()
        or dropout != 0.0
        or torch.compiler.is_compiling()
    ):
        return None
    global_key, global_value = (x.transpose(1, 2) for x in global_kv)  # (batch, heads, G, dim)
    num_global = global_key.shape[-2]
    # every query on the global keys alone, on the head-major view of the queries (no copy for one row):
    # log-sum-exp (batch, heads, padded, 1) and context (batch, heads, padded, dim)
    scores = query.transpose(1, 2) @ global_key.transpose(-1, -2)  # (batch, heads, padded, G)
    scores = (scores + masks.global_slot_bias[:, None, None, :]).float()
    global_context = scores.softmax(-1).to(query.dtype) @ global_value
    blocks = query_blocks(query, band)
    inputs = (
        blocks,
        *windows,
        bias[..., num_global:],
        query_blocks(scores.logsumexp(-1, keepdim=True), band, head_major=True),
        query_blocks(global_context, band, head_major=True),
    )
    return FAST_PATHS.slices(
        attend_blocks_merging_global, inputs, 2, block_bytes(blocks, num_global, band.layout.window_keys)
    )


def attend_blocks_merging_global(query, window_key, window_value, window_bias, global_lse, global_context):
    """`attend_merging_global` on blocks (batch, dilation, blocks, ...) of queries, window keys and values, the
    window's additive mask (block, keys) and the global keys' log-sum-exp and context -> (batch, dilation,
    blocks, heads, block, dim)."""
    # (batch, dilation, blocks, ...) -> (batch * dilation * blocks, ...): views
    context = attend_merging_global(
        query.flatten(0, 2),
        (window_key.flatten(0, 2), window_value.flatten(0, 2)),
        window_bias.flatten(0, 2).unsqueeze(1),
        global_lse.flatten(0, 2),
        global_context.flatten(0, 2),
    )
    return context.unflatten(0, query.shape[:3])


def attend_merging_global(query, window, window_bias, global_lse, global_context) -> torch.Tensor:
    """softmax over a block's global keys and window keys without concatenating them: the flash kernel's
    output and log-sum-exp over the window (keys and values read in place from the overlapping windows), and
    the same over the global keys, weighed by their shares of the total, sigmoid(lse_window - lse_global) for
    the window. `query` (blocks, heads, block, dim); `window` (keys, values), each (blocks, heads, K, dim);
    `window_bias` (blocks, 1, block, K) additive; the global keys' `global_lse` (blocks, heads, block, 1) and
    `global_context` (blocks, heads, block, dim), zero without global keys (lse -inf)."""
    local, local_lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, *window, attn_mask=window_bias, scale=1.0
    )
    window_share = torch.sigmoid(local_lse[..., None] - global_lse).to(query.dtype)
    return torch.lerp(global_context, local, window_share)
