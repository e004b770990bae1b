"""Linear layers through oneDNN on x86 CPUs, fused with the pass that follows them.

PyTorch's eager `F.linear` runs MKL's GEMM, then GELU or a residual add as a second pass over the output.
oneDNN computes `x W^T + b` and applies GELU or adds the residual as post-ops of the same call, while the
output tile is still in cache. This is the kernel that torch.compile emits for CPU inference (inductor's
mkldnn fusion passes call `torch.ops.mkldnn._linear_pointwise`); here it runs in eager mode. Its results match
`F.linear` to float32 rounding.

The fused op has no backward: when a gradient is needed, `OneDNNLinear` runs it for the forward (bias and
residual fused, GELU not, since its backward needs the input of GELU), and the input's and the weight's
gradients run through PyTorch's matmuls (`linear_backward`). After GELU, `OneDNNLinearGELU` takes GELU's
gradient and the bias's in one pass of a C kernel (cpu_kernels.py).
It runs for float32 on the CPU, with oneDNN enabled, on plain tensors (not tensor subclasses such as DTensor
or fake tensors), outside autocast, compiler traces (which fuse on their own) and torch.func transforms;
elsewhere `linear` runs the plain ops.
"""

import math
import platform
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.utils.flop_counter import flop_registry, register_flop_formula
from transformers.activations import GELUActivation

from .cpu_kernels import gelu_backward, gelu_backward_kernel, runs_kernels

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
    """Whether `linear` runs oneDNN for these operands."""
    return (
        ONEDNN
        and torch.backends.mkldnn.enabled
        and not torch.is_autocast_enabled("cpu")  # autocast casts F.linear's operands to its dtype
        and runs_kernels(*(t for t in tensors if t is not None))
    )


def onednn_linear(x, weight, bias=None, residual=None, gelu: bool = False) -> torch.Tensor:
    if residual is not None:
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu" if gelu else "none", [], "none")


class OneDNNLinear(torch.autograd.Function):
    """`x W^T + b (+ residual)` by oneDNN, differentiable: the gradients by `linear_backward`."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual):
        ctx.save_for_backward(x, weight)
        return onednn_linear(x, weight, bias, residual)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        needs_x, needs_weight, needs_bias, needs_residual = ctx.needs_input_grad
        grad_x, grad_weight = linear_backward(grad_output, x, weight, needs_x, needs_weight)
        grad_bias = grad_output.reshape(-1, grad_output.shape[-1]).sum(0) if needs_bias else None
        return grad_x, grad_weight, grad_bias, grad_output if needs_residual else None


class OneDNNLinearGELU(torch.autograd.Function):
    """GELU(x W^T + b): the linear by oneDNN and GELU by PyTorch; in the backward, GELU's derivative and the
    bias gradient in one pass of the C kernel (`cpu_kernels.gelu_backward`), then the linear's gradients as in
    `OneDNNLinear`."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        pre = onednn_linear(x, weight, bias)
        ctx.save_for_backward(x, weight, bias, pre)
        return F.gelu(pre)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight, bias, pre = ctx.saved_tensors
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad
        if torch.is_grad_enabled():
            # the backward is itself differentiated: PyTorch's differentiable ops, on GELU's input recomputed
            # from the inputs (the saved one has no graph back to them)
            grad_pre = torch.ops.aten.gelu_backward(grad_output, F.linear(x, weight, bias))
            grad_bias = grad_pre.reshape(-1, grad_pre.shape[-1]).sum(0)
        else:
            grad_pre, grad_bias = gelu_backward(grad_output, pre)
        grad_x, grad_weight = linear_backward(grad_pre, x, weight, needs_x, needs_weight)
        return grad_x, grad_weight, grad_bias if needs_bias else None


def linear_backward(grad_output, x, weight, needs_x: bool, needs_weight: bool):
    """The gradients of `x W^T` for x and W, by PyTorch's matmuls: differentiable when the backward is itself
    differentiated, and as fast as oneDNN's or faster on the CPUs measured (on Sapphire Rapids, oneDNN's input and
    narrowing-weight gradients made a ViT-B/16 training step 25% slower)."""
    grad_x = grad_output.matmul(weight) if needs_x else None
    grad_weight = None
    if needs_weight:  # (out, tokens) x (tokens, in)
        rows, inputs = grad_output.reshape(-1, grad_output.shape[-1]), x.reshape(-1, x.shape[-1])
        grad_weight = rows.t().mm(inputs)
    return grad_x, grad_weight


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    gelu: bool = False,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """`x W^T + b`, then GELU (exact, erf-based) when `gelu`, or plus `residual` (shaped like the output)."""
    if gelu and residual is not None:
        raise ValueError("A linear layer takes either GELU or a residual add after it, not both.")
    operands = (x, weight, bias, residual)
    if not runs_fused(*operands):
        return finish(F.linear(x, weight, bias), gelu, residual)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in operands):
        if gelu and gelu_backward_kernel() is not None:
            return OneDNNLinearGELU.apply(x, weight, bias)
        return finish(OneDNNLinear.apply(*operands), gelu, None)
    return onednn_linear(x, weight, bias, residual, gelu)


def linear_layer(
    layer: nn.Module,
    x: torch.Tensor,
    activation: Callable | None = None,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """`linear` with a layer's weights when calling it would run `nn.Linear.forward` alone (`is_plain_linear`);
    any other module (a LoRA adapter, a quantized layer, a layer under hooks) runs its own forward, which the
    weights alone would skip. `activation` (a module of transformers' `ACT2FN`) is fused when it is the exact
    GELU, else applied to the output."""
    if activation is not None and residual is not None:
        raise ValueError("A linear layer takes either an activation or a residual add after it, not both.")
    gelu = is_exact_gelu(activation)
    if is_plain_linear(layer):
        output = linear(x, layer.weight, layer.bias, gelu, residual)
    else:
        output = finish(layer(x), gelu, residual)
    return output if gelu or activation is None else activation(output)


def is_plain_linear(layer: nn.Module) -> bool:
    """Whether calling `layer` runs `nn.Linear.forward` and nothing else, so that a fast path may read its
    weights instead: an `nn.Linear` (no subclass: a LoRA adapter, a quantized layer) whose `forward` is not
    replaced on the instance (accelerate's offload hooks do that, to load the weights from the meta device first)
    and that no forward or backward hook, of its own or global, would see."""
    return (
        type(layer) is nn.Linear
        and "forward" not in layer.__dict__
        and not (layer._forward_hooks or layer._forward_pre_hooks or layer._backward_hooks or layer._backward_pre_hooks)
        and not (
            module_hooks._global_forward_hooks
            or module_hooks._global_forward_pre_hooks
            or module_hooks._global_backward_hooks
            or module_hooks._global_backward_pre_hooks
        )
    )


def is_exact_gelu(activation: Callable | None) -> bool:
    """Whether `activation` is the erf-based GELU (transformers' "gelu", torch's `nn.GELU()`), oneDNN's post-op."""
    if type(activation) is GELUActivation:
        return activation.act is F.gelu
    return type(activation) is nn.GELU and activation.approximate == "none"


def finish(output: torch.Tensor, gelu: bool, residual: torch.Tensor | None) -> torch.Tensor:
    """The post-op of `linear` (GELU or the residual add, at most one) as a separate pass."""
    if gelu:
        return F.gelu(output)
    return output if residual is None else residual + output
