"""Swin's window attention on the CPU, plugged into `FAST_PATHS.attention["swin_windows"]` (fast_paths.py).

Two replacements for `SwinAttention`'s sdpa path (shifted window attention, Liu et al., 2021, Section 3.2), both
giving its outputs and gradients to float32 rounding:
- the C kernel (cpu_kernels.py), for training and inference: the q/k/v projection runs once on the raster map
  and the kernel gathers each (shifted) window from it as it reads, keeping a window and head in cache from the
  scores to the output, and writes each token's output back in its place (no gathers, no roll);
- elsewhere on the CPU, for training: `WindowAttention`, which differentiates the additive mask without sdpa's
  math path, whose NaN-safe softmax adds three passes over the scores.
"""

import weakref

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .cpu_kernels import FusedWindowAttention, fused_window_attention, pad_mask, runs_window_attention_kernel
from .fused_linear import is_plain_linear, linear
from .modeling_swin import SwinAttention, window_order


class WindowAttention(torch.autograd.Function):
    """softmax(q k^T * scale + mask) v over windows, with the gradient of the additive mask, for training on the
    CPU where the C kernel does not run: sdpa has no fused kernel there that differentiates an
    additive mask and falls back to its math path, whose NaN-safe softmax adds three passes over the scores.
    Takes the (windows, N, 3 * dim) output of the qkv projection and returns (windows, N, dim): one copy puts
    the heads in the batch dimension of `bmm`, one copy puts the gradients back. The mask, (1 or windows per
    image, heads, N, N), broadcasts over the images of the batch instead of being repeated. The probabilities
    are kept for the backward, as the math path keeps them."""

    @staticmethod
    def forward(ctx, qkv, mask, num_heads, scale):
        windows, tokens, width = qkv.shape
        # (windows, N, 3 * dim) -> (3, windows * heads, N, head_dim), the query scaled on the way
        heads = torch.empty(3, windows, num_heads, tokens, width // (3 * num_heads), dtype=qkv.dtype, device=qkv.device)
        source = qkv.view(windows, tokens, 3, num_heads, -1).permute(2, 0, 3, 1, 4)
        torch.mul(source[0], scale, out=heads[0])
        heads[1:].copy_(source[1:])
        query, key, value = heads.flatten(1, 2)
        scores = torch.bmm(query, key.transpose(1, 2))  # (windows * heads, N, N)
        scores.view(-1, *mask.shape).add_(mask)
        probs = torch.softmax(scores, dim=-1)
        ctx.save_for_backward(query, key, value, probs)
        ctx.scale, ctx.mask_shape = scale, mask.shape
        # (windows * heads, N, head_dim) -> (windows, N, dim)
        return torch.bmm(probs, value).view(windows, num_heads, tokens, -1).transpose(1, 2).reshape(windows, tokens, -1)

    @staticmethod
    def backward(ctx, grad_output):
        query, key, value, probs = ctx.saved_tensors
        windows, tokens, _ = grad_output.shape
        num_heads = query.shape[0] // windows
        grad_output = grad_output.view(windows, tokens, num_heads, -1).transpose(1, 2).reshape(query.shape)
        grads = torch.empty((3, *query.shape), dtype=query.dtype, device=query.device)
        torch.bmm(probs.transpose(1, 2), grad_output, out=grads[2])
        grad_scores = torch._softmax_backward_data(
            torch.bmm(grad_output, value.transpose(1, 2)), probs, -1, probs.dtype
        )
        grad_mask = None
        if ctx.needs_input_grad[1]:  # summed over the images the mask was broadcast to
            grad_mask = grad_scores.view(-1, *ctx.mask_shape).sum(0)
        torch.bmm(grad_scores, key, out=grads[0]).mul_(ctx.scale)
        torch.bmm(grad_scores.transpose(1, 2), query, out=grads[1])  # the saved query is already scaled
        # (3, windows * heads, N, head_dim) -> (windows, N, 3 * dim)
        grad_qkv = grads.view(3, windows, num_heads, tokens, -1).permute(1, 3, 0, 2, 4).reshape(windows, tokens, -1)
        return grad_qkv, grad_mask, None, None


def window_attention(
    module: SwinAttention, attention, tokens: torch.Tensor, map_size: tuple[int, int], crop, window: int, shift: int
) -> torch.Tensor | None:
    """`SwinAttention`'s result for sdpa without dropout, by the kernel or (training on the CPU) by
    `WindowAttention`; None for calls neither serves."""
    if attention is not ALL_ATTENTION_FUNCTIONS["sdpa"] or (module.training and module.dropout > 0.0):
        return None
    table = module.relative_position_bias.relative_position_bias_table
    if runs_window_attention_kernel(window * window, module.head_dim, tokens, table):
        return kernel_attention(module, tokens, map_size, crop, window, shift)
    if tokens.device.type == "cpu" and not torch.compiler.is_compiling() and needs_grad(module, tokens):
        batch = tokens.shape[0]
        windows = module.windows_of(tokens, map_size, window, shift)
        mask = module.additive_mask(*map_size, window, shift, tokens.dtype)
        heads = WindowAttention.apply(fused_qkv(module, windows), mask, module.num_heads, module.scaling)
        return module.to_raster(heads, batch, map_size, crop, window, shift)
    return None


def kernel_attention(module: SwinAttention, tokens, map_size, crop, window: int, shift: int) -> torch.Tensor:
    """(batch, H' * W', C) raster tokens -> the heads' outputs (batch, crop_h * crop_w, C), by the kernel."""
    batch, _, dim = tokens.shape
    qkv = fused_qkv(module, tokens)
    order = window_order(*map_size, window, shift, tokens.device)
    mask = kernel_mask(module.additive_mask(*map_size, window, shift, qkv.dtype))
    if needs_grad(module, tokens):
        heads = FusedWindowAttention.apply(qkv, mask, module.num_heads, module.scaling, order)
    else:
        heads = fused_window_attention(qkv, mask, module.num_heads, module.scaling, order)[0]
    if tuple(crop) != tuple(map_size):
        heads = heads.view(batch, *map_size, dim)[:, : crop[0], : crop[1]].flatten(1, 2)
    return heads


# padded masks, per mask the model's cache returned (each cached mask is the same tensor call after call)
_KERNEL_MASKS: dict[int, tuple[weakref.ref, torch.Tensor]] = {}


def kernel_mask(mask: torch.Tensor) -> torch.Tensor:
    """`pad_mask(mask)`, kept while `mask` lives and needs no gradient."""
    hit = _KERNEL_MASKS.get(id(mask))
    if hit is not None and hit[0]() is mask:
        return hit[1]
    padded = pad_mask(mask)
    if not mask.requires_grad:
        if len(_KERNEL_MASKS) >= 64:
            _KERNEL_MASKS.clear()
        _KERNEL_MASKS[id(mask)] = (weakref.ref(mask), padded)
    return padded


def needs_grad(module: SwinAttention, tokens: torch.Tensor) -> bool:
    """Whether attention must be differentiable: in its input or in the weights it uses."""
    return torch.is_grad_enabled() and (tokens.requires_grad or any(p.requires_grad for p in module.parameters()))


def fused_qkv(module: SwinAttention, tokens: torch.Tensor) -> torch.Tensor:
    """(..., 3 * dim): one matmul on the concatenated q/k/v weights, or the projections' own forwards when one is
    not a plain `nn.Linear` (`is_plain_linear`: an adapter, a quantized or an offloaded layer)."""
    projections = (module.q_proj, module.k_proj, module.v_proj)
    if not all(is_plain_linear(projection) for projection in projections):
        return torch.cat([projection(tokens) for projection in projections], dim=-1)
    bias = torch.cat([p.bias for p in projections]) if projections[0].bias is not None else None
    return linear(tokens, torch.cat([p.weight for p in projections]), bias)
