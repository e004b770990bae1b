"""Installs hubformers' speed-only code into the models' one seam (`modeling_common.FAST_PATHS`).

The models are plain PyTorch; where they call a hook of `FAST_PATHS`, this module plugs in:
- the linears through oneDNN with GELU or the residual add fused (fused_linear.py),
- position-wise layers and independent slices run over cache-sized chunks (chunking.py),
- Swin's window attention by a C kernel, or for CPU training without it, with the mask's gradient and without
  sdpa's math path (swin_fast_paths.py, over cpu_kernels.py),
- Longformer's global attention computed on the hidden states once (longformer_fast_paths.py).

Each fast path stands aside for the calls it does not serve (other devices, dtypes, compiler traces, layers that
are not plain `nn.Linear`), and its results match the plain ones to float32 rounding. `import hubformers` calls
`install()` unless the environment sets `HUBFORMERS_FAST_PATHS=0`; `disabled()` turns them off for a block of
code.
"""

import contextlib
import os

from . import chunking, fused_linear, longformer_fast_paths, swin_fast_paths
from .modeling_common import FAST_PATHS, FastPaths

PLAIN = FastPaths()


def install() -> None:
    """Plug the fast paths into the seam."""
    FAST_PATHS.linear = fused_linear.linear_layer
    FAST_PATHS.rows = chunking.in_row_chunks
    FAST_PATHS.slices = chunking.map_chunks
    FAST_PATHS.attention.update(
        swin_windows=swin_fast_paths.window_attention,
        longformer_global=longformer_fast_paths.global_attention,
        longformer_band=longformer_fast_paths.band_attention,
    )


def uninstall() -> None:
    """Back to the plain hooks."""
    FAST_PATHS.__dict__.update(PLAIN.__dict__, attention={})


def installed() -> bool:
    return FAST_PATHS.linear is not PLAIN.linear


@contextlib.contextmanager
def disabled():
    """The plain hooks inside the block, the previous ones after it."""
    previous = dict(FAST_PATHS.__dict__, attention=dict(FAST_PATHS.attention))
    uninstall()
    try:
        yield
    finally:
        FAST_PATHS.__dict__.update(previous)


def install_unless_switched_off() -> None:
    if os.environ.get("HUBFORMERS_FAST_PATHS", "1") != "0":
        install()
