"""Linear layers fused with the pass that follows them, for inference on x86 CPUs.

PyTorch's eager `F.linear` runs MKL's GEMM, then GELU or a residual add as a second pass over the output.
oneDNN computes `x W^T + b` and applies GELU or adds the residual as post-ops of the same call, while the
output tile is still in cache. This is the kernel that torch.compile emits for CPU inference (inductor's
mkldnn fusion passes call `torch.ops.mkldnn._linear_pointwise`); here it runs in eager mode. On the AMD EPYC
machine these models are benchmarked on, oneDNN's JIT GEMM is also 5-20% faster than MKL's for the shapes of
Swin-T, and its results match `F.linear` to float32 rounding.

The fused op has no backward, so it runs only when no input needs a gradient, for float32 on the CPU, with
oneDNN enabled, and outside compiler traces (which fuse on their own); elsewhere `linear` runs the plain ops.
"""

import math
import platform

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import flop_registry, register_flop_formula

ONEDNN = (
    platform.machine().lower() in ("x86_64", "amd64")  # elsewhere the platform's BLAS is the faster choice
    and torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
)

if ONEDNN and torch.ops.mkldnn._linear_pointwise not in flop_registry:

    @register_flop_formula(torch.ops.mkldnn._linear_pointwise)
    def _linear_pointwise_flop(x_shape, *args, out_shape, **kwargs) -> int:
        """So that FlopCounterMode counts the fused linears too: 2 x tokens x in_features x out_features."""
        return 2 * math.prod(out_shape) * x_shape[-1]


def runs_fused(*tensors: torch.Tensor | None) -> bool:
    """Whether `linear` takes the oneDNN path for these operands."""
    present = [t for t in tensors if t is not None]
    return (
        ONEDNN
        and torch.backends.mkldnn.enabled
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in present)
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in present))
        and not torch.compiler.is_compiling()
    )


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    gelu: bool = False,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """`x W^T + b`, then GELU (exact, erf-based) when `gelu`, or plus `residual` (shaped like the output)."""
    if runs_fused(x, weight, bias, residual) and not (gelu and residual is not None):
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu" if gelu else "none", [], "none")
    return finish(F.linear(x, weight, bias), gelu, residual)


def linear_layer(
    layer: nn.Module, x: torch.Tensor, gelu: bool = False, residual: torch.Tensor | None = None
) -> torch.Tensor:
    """`linear` with a layer's weights when it is a plain `nn.Linear`; any other module (a LoRA adapter, a
    quantized layer) runs its own forward, which the weights alone would skip."""
    if type(layer) is nn.Linear:
        return linear(x, layer.weight, layer.bias, gelu, residual)
    return finish(layer(x), gelu, residual)


def finish(output: torch.Tensor, gelu: bool, residual: torch.Tensor | None) -> torch.Tensor:
    """The post-op of `linear` as a separate pass."""
    if gelu and residual is not None:
        raise ValueError("A linear layer takes either GELU or a residual add after it, not both.")
    if gelu:
        return F.gelu(output)
    return output if residual is None else residual + output
