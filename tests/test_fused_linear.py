"""Fused linear layers: oneDNN's linear with GELU or a residual add as post-ops gives F.linear's outputs and
gradients, runs for float32 on x86 CPUs and nowhere else, runs an adapter's own forward, and is counted by
FlopCounterMode."""

import pytest
import torch
import torch.nn.functional as F
from conftest import max_abs_diff
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hubformers import cpu_kernels, fused_linear
from hubformers.fused_linear import linear, linear_layer, runs_fused

TOL = 1e-5
needs_onednn = pytest.mark.skipif(not fused_linear.ONEDNN, reason="oneDNN's fused linear is for x86 CPUs")
needs_kernel = pytest.mark.skipif(
    cpu_kernels.gelu_backward_kernel() is None, reason="the C kernels need Linux x86-64 and a C compiler"
)


@pytest.fixture
def operands():
    torch.manual_seed(0)
    x, weight, bias = torch.randn(3, 50, 24), torch.randn(40, 24) / 5, torch.randn(40)
    return x, weight, bias, torch.randn(3, 50, 40)


@pytest.mark.parametrize("onednn", [pytest.param(True, marks=needs_onednn), False])
def test_fused_post_ops_match_the_plain_ops(monkeypatch, operands, onednn):
    monkeypatch.setattr(fused_linear, "ONEDNN", onednn)
    x, weight, bias, residual = operands
    with torch.no_grad():
        assert runs_fused(x, weight, bias) is onednn
        assert max_abs_diff(linear(x, weight, bias), F.linear(x, weight, bias)) <= TOL
        assert max_abs_diff(linear(x, weight, None), F.linear(x, weight)) <= TOL
        assert max_abs_diff(linear(x, weight, bias, gelu=True), F.gelu(F.linear(x, weight, bias))) <= TOL
        expected = residual + F.linear(x, weight, bias)
        assert max_abs_diff(linear(x, weight, bias, residual=residual), expected) <= TOL


@needs_onednn
@pytest.mark.parametrize("gelu, kernel", [pytest.param(True, True, marks=needs_kernel), (True, False), (False, False)])
def test_gradients_match_the_plain_ops(monkeypatch, operands, gelu, kernel):
    """With gradients, oneDNN runs the forward (GELU as a second pass) and PyTorch's matmuls the input's and the
    weight's gradients; GELU's gradient and the bias's come from the C kernel where it runs (40 columns: two
    whole vectors and a part)."""
    if not kernel:
        monkeypatch.setattr(fused_linear, "gelu_backward_kernel", lambda: None)
    x, weight, bias, residual = (t.requires_grad_(True) for t in operands)
    residual = None if gelu else residual
    inputs = [t for t in (x, weight, bias, residual) if t is not None]
    upstream = torch.randn(3, 50, 40)
    output = linear(x, weight, bias, gelu, residual)
    assert (type(output.grad_fn).__name__ == "OneDNNLinearGELUBackward") is kernel
    got = torch.autograd.grad(output, inputs, upstream)
    expected_output = fused_linear.finish(F.linear(x, weight, bias), gelu, residual)
    expected = torch.autograd.grad(expected_output, inputs, upstream)
    for g, e in zip(got, expected, strict=True):
        assert max_abs_diff(g, e) <= TOL


@needs_onednn
@pytest.mark.parametrize("layout", ["expanded", "transposed", "strided"])
def test_gradients_of_non_contiguous_upstreams(operands, layout):
    """The backward takes whatever layout autograd hands it: a sum's expanded gradient, a transposed or a strided
    slice's."""
    x, weight, bias, _ = (t.requires_grad_(True) for t in operands)
    scale = torch.randn(40, 50, 3)
    reduce = {
        "expanded": lambda out: out.sum(),
        "transposed": lambda out: (out.transpose(0, 2) * scale).sum(),
        "strided": lambda out: out[:, ::2].square().sum(),
    }[layout]
    got = torch.autograd.grad(reduce(linear(x, weight, bias)), (x, weight, bias))
    expected = torch.autograd.grad(reduce(F.linear(x, weight, bias)), (x, weight, bias))
    for g, e in zip(got, expected, strict=True):
        assert max_abs_diff(g, e) <= TOL * max(1.0, e.abs().max().item())


@needs_onednn
@pytest.mark.parametrize("gelu", [False, True])
def test_second_order_gradients_match_the_plain_ops(operands, gelu):
    """A gradient penalty differentiates the backward: it runs the plain matmul and PyTorch's GELU gradient,
    which autograd can differentiate."""
    x, weight, bias, residual = (t.requires_grad_(True) for t in operands)
    residual = None if gelu else residual

    def penalty(output):
        (grad_x,) = torch.autograd.grad(output.square().sum(), x, create_graph=True)
        return torch.autograd.grad(grad_x.square().sum(), weight)[0]

    expected = penalty(fused_linear.finish(F.linear(x, weight, bias), gelu, residual))
    got = penalty(linear(x, weight, bias, gelu, residual))
    assert max_abs_diff(got, expected) <= 1e-4 * expected.abs().max()


def test_plain_ops_for_other_dtypes_devices_and_tensor_subclasses(operands):
    x, weight, bias, _ = operands
    assert runs_fused(x, weight, bias) is fused_linear.ONEDNN
    assert not runs_fused(x.double(), weight.double())
    assert not runs_fused(x.to("meta"), weight.to("meta"))

    class Tagged(torch.Tensor):
        pass

    assert not runs_fused(x.as_subclass(Tagged), weight)


def test_autocast_gets_the_plain_ops_in_its_dtype(operands):
    x, weight, bias, residual = operands
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(x, weight, bias, gelu=True).dtype == torch.bfloat16
        expected = residual + F.linear(x, weight, bias)  # bfloat16 promoted by the float32 residual
        assert max_abs_diff(linear(x, weight, bias, residual=residual), expected) == 0


def test_torch_func_transforms_run_the_plain_ops(operands):
    x, weight, bias, residual = operands

    def loss(w):
        return linear(x, w, bias, residual=residual).square().sum()

    expected = torch.autograd.grad(loss(weight.requires_grad_(True)), weight)[0]
    assert max_abs_diff(torch.func.grad(loss)(weight.detach()), expected) <= TOL
    per_row = torch.func.vmap(lambda row: linear(row, weight.detach(), bias, gelu=True))(x)
    assert max_abs_diff(per_row, F.gelu(F.linear(x, weight, bias))) <= TOL


def test_an_adapter_runs_its_own_forward(operands):
    x, _, _, residual = operands

    class Doubled(nn.Linear):
        def forward(self, inputs):
            return 2 * super().forward(inputs)

    layer = Doubled(24, 40)
    with torch.no_grad():
        assert max_abs_diff(linear_layer(layer, x, residual=residual), residual + layer(x)) <= TOL


@pytest.mark.parametrize("hook", ["forward hook", "forward pre-hook", "replaced forward", "global forward hook"])
def test_a_hooked_linear_runs_through_its_call(operands, hook):
    """Hooks and a replaced `forward` (accelerate's offload hooks load the weights from the meta device there)
    run as they would when the layer is called: the fast path does not read the weights past them."""
    x, _, _, residual = operands
    layer = nn.Linear(24, 40)
    handles = []
    if hook == "forward hook":
        handles.append(layer.register_forward_hook(lambda module, args, output: 2 * output))
    elif hook == "forward pre-hook":
        handles.append(layer.register_forward_pre_hook(lambda module, args: (args[0] + 1,)))
    elif hook == "replaced forward":
        plain_forward = layer.forward
        layer.forward = lambda inputs: 2 * plain_forward(inputs)
    else:
        handles.append(nn.modules.module.register_module_forward_hook(lambda module, args, output: 2 * output))
    try:
        with torch.no_grad():
            expected = layer(x)
            assert max_abs_diff(expected, F.linear(x, layer.weight, layer.bias)) > 1.0  # the hook changes it
            assert max_abs_diff(linear_layer(layer, x, residual=residual), residual + expected) <= TOL
            assert max_abs_diff(linear_layer(layer, x, activation=nn.GELU()), F.gelu(expected)) <= TOL
    finally:
        for handle in handles:
            handle.remove()
    assert fused_linear.is_plain_linear(layer) is (hook != "replaced forward")


def test_gelu_and_residual_together_are_refused(operands):
    x, weight, bias, residual = operands
    with torch.no_grad(), pytest.raises(ValueError, match="either GELU or a residual"):
        linear(x, weight, bias, gelu=True, residual=residual)


@needs_onednn
def test_flop_counter_counts_the_fused_op(operands):
    x, weight, bias, residual = operands
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        linear(x, weight, bias, gelu=True)
        linear(x, weight, bias, residual=residual)
    assert counter.get_total_flops() == 2 * (2 * 3 * 50 * 24 * 40)
