"""Position-wise layers run over chunks of tokens, and the size checks that decide when that is safe.

A Transformer's feed-forward layer (Vaswani et al., 2017, Section 3.3) works on every token on its own, and its
hidden activations are 4x wider than its input: 38 MB per tensor for Swin-T's first stage on 8 images, 50 MB for
a 4,096-token Longformer. Over 32 MB, glibc's malloc serves every allocation from fresh pages of the kernel, so
each call pays a page fault per 4 kB of its output, the GEMM writing it and the activation after it: on CPU the
first-stage MLP of Swin-T runs twice as fast over chunks of rows (`in_row_chunks`), whose buffers malloc reuses
and which stay in cache between the two matmuls. Each row is computed as before, so results do not change.
The same holds for any function of independent slices (`map_chunks`): Swin's stages run over chunks of images
at inference, Longformer's attention over chunks of blocks.
"""

import torch

from .modeling_common import is_static

# the widest activation of one chunk: well under glibc's 32 MB mmap threshold, and about a core's share of L3
CHUNK_BYTES = 8 * 2**20


def map_chunks(function, tensors: tuple[torch.Tensor, ...], dim: int, slice_bytes: int) -> torch.Tensor:
    """`function(*tensors)` for a `function` that treats the slices of its inputs along `dim` independently and
    returns a tensor whose slices along `dim` match theirs, run over chunks of slices when the widest activation
    of a call takes `slice_bytes` per slice and all of them would not fit in CHUNK_BYTES. Only on CPU and outside
    compiler traces, where a chunk count that depends on the input size would become a guard (compiled code
    fuses such layers anyway)."""
    chunk = chunk_size(tensors[0], dim, slice_bytes)
    if chunk == tensors[0].shape[dim]:
        return function(*tensors)
    return torch.cat([function(*pieces) for pieces in zip(*(t.split(chunk, dim) for t in tensors))], dim)


def chunk_size(tensor: torch.Tensor, dim: int, slice_bytes: int) -> int:
    """How many slices of `tensor` along `dim` one chunk takes (`map_chunks`): all of them off the CPU, under
    compiler traces, or when they fit in CHUNK_BYTES; else as many as fit, evened out over the chunks (a small
    last chunk would run less efficiently)."""
    num_slices = tensor.shape[dim]
    chunk = max(1, CHUNK_BYTES // slice_bytes)
    if tensor.device.type != "cpu" or not is_static(num_slices) or num_slices <= chunk:
        return num_slices
    num_chunks = -(-num_slices // chunk)
    return -(-num_slices // num_chunks)


def in_row_chunks(function, hidden_states: torch.Tensor, width: int) -> torch.Tensor:
    """`function(hidden_states)` for a position-wise `function` (each token's output depends on that token
    alone) whose widest activation holds `width` values per token, run over chunks of tokens (`map_chunks`)."""
    # (*leading, features) -> (tokens, features) -> (*leading, out_features)
    output = map_chunks(function, (hidden_states.flatten(0, -2),), 0, width * hidden_states.element_size())
    return output.view(*hidden_states.shape[:-1], output.shape[-1])
