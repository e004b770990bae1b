"""The C kernels against PyTorch's ops. Window attention: outputs, probabilities, and the gradients of q/k/v and
of the mask, for window sizes whose rows are and are not whole vectors, one mask or one per window position,
heads of 16 to 64 floats and any thread count. GELU's backward: the input's and the bias's gradients over the
whole range of inputs, for widths that are and are not whole vectors. The fallbacks where no kernel can run,
and a mask of the wrong shape."""

import pytest
import torch

from hubformers import cpu_kernels
from hubformers.modeling_swin import window_order

needs_kernel = pytest.mark.skipif(
    cpu_kernels.window_attention_kernel(16, 16) is None, reason="the C kernels need Linux x86-64 and a C compiler"
)


def reference_attention(qkv, mask, num_heads, scale):
    """softmax(q k^T * scale + mask) v with PyTorch's ops, window w taking mask[w % M]."""
    windows, tokens, _ = qkv.shape
    query, key, value = qkv.view(windows, tokens, 3, num_heads, -1).permute(2, 0, 3, 1, 4)
    scores = (query @ key.transpose(-1, -2) * scale).view(-1, *mask.shape) + mask  # (images, M, heads, N, N)
    probs = scores.softmax(-1).view(windows, num_heads, tokens, tokens)
    return (probs @ value).transpose(1, 2).reshape(windows, tokens, -1), probs


def as_images(qkv, positions):
    """Windows, `positions` to an image, as the kernel takes them: (images, T, 3 * dim), and the order that
    lists the windows' tokens as they lie."""
    windows, tokens, width = qkv.shape
    return qkv.view(windows // positions, positions * tokens, width), torch.arange(positions * tokens)


def random_operands(windows, tokens, num_heads, head_dim, positions):
    qkv = torch.randn(windows, tokens, 3 * num_heads * head_dim)
    mask = torch.randn(positions, num_heads, tokens, tokens)
    mask[..., : tokens // 3, tokens // 2 :] = -100.0  # as the shift mask keeps regions apart
    return qkv, mask


@needs_kernel
@pytest.mark.parametrize(
    "windows, tokens, num_heads, head_dim, positions",
    [
        (8, 49, 3, 32, 4),  # Swin's 7x7 windows, a mask per window position
        (6, 49, 2, 32, 1),  # one mask for every window
        (4, 16, 2, 16, 2),  # rows of exactly one vector
        (3, 9, 4, 64, 3),  # a window shrunk to a small map
        (2, 144, 1, 32, 1),  # 12x12 windows (Swin-B at 384)
    ],
)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matches_pytorch(windows, tokens, num_heads, head_dim, positions, threads):
    qkv, mask = random_operands(windows, tokens, num_heads, head_dim, positions)
    scale = head_dim**-0.5
    grad_output = torch.randn(windows, tokens, num_heads * head_dim)
    expected, expected_probs = reference_attention(qkv.requires_grad_(), mask.requires_grad_(), num_heads, scale)
    expected_grads = torch.autograd.grad(expected, (qkv, mask), grad_output)

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        padded, (images, order) = cpu_kernels.pad_mask(mask), as_images(qkv, positions)
        output = cpu_kernels.FusedWindowAttention.apply(images, padded, num_heads, scale, order).view_as(expected)
        grads = torch.autograd.grad(output, (qkv, mask), grad_output)
        with torch.no_grad():
            inference, probs = cpu_kernels.fused_window_attention(images, padded, num_heads, scale, order, True)
            inference = inference.view_as(expected)
    finally:
        torch.set_num_threads(previous)
    assert (output - expected).abs().max() <= 1e-5
    assert torch.equal(inference, output)
    assert (probs[..., :tokens] - expected_probs).abs().max() <= 1e-6
    assert not probs[..., tokens:].any()  # the padding has zero probability
    assert (grads[0] - expected_grads[0]).abs().max() <= 1e-5
    assert (grads[1] - expected_grads[1]).abs().max() <= 1e-5


@needs_kernel
def test_frozen_mask_and_non_contiguous_inputs():
    """A mask that needs no gradient gets none; a non-contiguous projection and upstream gradient are read as
    their values."""
    _, mask = random_operands(4, 49, 3, 32, 2)
    qkv = torch.randn(98, 2, 288).transpose(0, 1).requires_grad_()  # two images of two windows
    grad_output = torch.randn(96, 98, 2).transpose(0, 2)
    order = torch.arange(98)
    output = cpu_kernels.FusedWindowAttention.apply(qkv, cpu_kernels.pad_mask(mask), 3, 0.2, order)
    (grad,) = torch.autograd.grad(output, qkv, grad_output)
    expected = reference_attention(qkv.reshape(4, 49, 288), mask, 3, 0.2)[0].view(2, 98, 96)
    (expected_grad,) = torch.autograd.grad(expected, qkv, grad_output)
    assert (output - expected).abs().max() <= 1e-5
    assert (grad - expected_grad).abs().max() <= 1e-5


@needs_kernel
@pytest.mark.parametrize("shape", [(7, 384), (5, 3, 40), (9, 3)])
@pytest.mark.parametrize("threads", [1, 2])
def test_gelu_backward_matches_pytorch(shape, threads):
    pre = torch.randn(shape) * 4
    pre.view(-1)[:6] = torch.tensor([0.0, -0.0, 12.0, -12.0, 30.0, -30.0])  # exp(-x^2 / 2) underflows
    grad = torch.randn(shape)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        grad_pre, grad_bias = cpu_kernels.gelu_backward(grad, pre)
    finally:
        torch.set_num_threads(previous)
    expected = torch.ops.aten.gelu_backward(grad, pre)
    assert (grad_pre - expected).abs().max() <= 1e-6 * grad.abs().max()
    assert (grad_bias - expected.reshape(-1, shape[-1]).sum(0)).abs().max() <= 1e-5


def test_no_kernel_where_it_cannot_run(monkeypatch, tmp_path, caplog):
    """Heads that are not whole vectors, windows too large for the stack, `HUBFORMERS_CPU_KERNELS=0` and a
    failing compiler: no kernel (the callers run PyTorch's ops), and the compiler's failure is logged."""
    assert cpu_kernels.window_attention_kernel(49, 24) is None
    assert cpu_kernels.window_attention_kernel(cpu_kernels.MAX_TOKENS + 1, 32) is None
    monkeypatch.setenv("HUBFORMERS_CPU_KERNELS", "0")
    assert not cpu_kernels.enabled()
    monkeypatch.setenv("HUBFORMERS_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")
    assert cpu_kernels.compile_library(cpu_kernels.WINDOW_ATTENTION_SOURCE, {"N": 49, "D": 32}) is None
    assert "no fused CPU kernel" in caplog.text
    assert not list(tmp_path.rglob("*.so"))


@needs_kernel
def test_libraries_are_cached_by_source_and_sizes(monkeypatch, tmp_path):
    monkeypatch.setenv("HUBFORMERS_CACHE", str(tmp_path))
    first = cpu_kernels.compile_library(cpu_kernels.WINDOW_ATTENTION_SOURCE, {"N": 16, "D": 16})
    built = list(tmp_path.rglob("*.so"))
    assert first is not None and len(built) == 1

    def no_compiler(*args, **kwargs):
        raise OSError("no compiler")

    monkeypatch.setattr(cpu_kernels.subprocess, "run", no_compiler)
    # a second load reads the cache; other sizes need another build
    assert cpu_kernels.compile_library(cpu_kernels.WINDOW_ATTENTION_SOURCE, {"N": 16, "D": 16}) is not None
    assert cpu_kernels.compile_library(cpu_kernels.WINDOW_ATTENTION_SOURCE, {"N": 25, "D": 16}) is None
    assert list(tmp_path.rglob("*.so")) == built


@needs_kernel
@pytest.mark.parametrize("shift", [0, 2])
def test_shifted_windows_read_and_written_in_place(shift):
    """With `order`, the kernel takes each image's tokens in raster order, gathers the (shifted) windows as it
    reads and writes every token's output and gradient back in its place: as a gather, attention and the
    inverse scatter by PyTorch's ops."""
    images, height, width, window, num_heads, head_dim = 2, 8, 12, 4, 2, 16
    order = window_order(height, width, window, shift, torch.device("cpu"))
    positions = (height // window) * (width // window) if shift else 1
    tokens = window * window
    qkv, mask = random_operands(images * height * width // tokens, tokens, num_heads, head_dim, positions)
    raster = torch.empty(images, height * width, qkv.shape[-1])
    raster[:, order] = qkv.view(images, height * width, -1)  # the raster map whose windows are qkv's
    raster.requires_grad_(), mask.requires_grad_()
    grad_output = torch.randn(images, height * width, num_heads * head_dim)

    windowed, _ = reference_attention(raster[:, order].flatten(0, 1).view_as(qkv), mask, num_heads, 0.25)
    expected = torch.zeros_like(grad_output).index_copy(1, order, windowed.view(images, -1, grad_output.shape[-1]))
    expected_grads = torch.autograd.grad(expected, (raster, mask), grad_output)
    output = cpu_kernels.FusedWindowAttention.apply(raster, cpu_kernels.pad_mask(mask), num_heads, 0.25, order)
    grads = torch.autograd.grad(output, (raster, mask), grad_output)
    assert (output - expected).abs().max() <= 1e-5
    for got, want in zip(grads, expected_grads, strict=True):
        assert (got - want).abs().max() <= 1e-5


@needs_kernel
@pytest.mark.parametrize(
    "qkv_shape, mask_shape, order_size",
    [
        ((1, 196, 288), (2, 3, 49, 49), 196),  # the mask not padded
        ((1, 196, 288), (3, 3, 49, 64), 196),  # 4 windows, 3 masks
        ((196, 288), (1, 3, 49, 64), 196),  # no images dimension
        ((2, 98, 288), (2, 3, 49, 64), 97),  # an order that is not the image's tokens
        ((2, 90, 288), (1, 3, 49, 64), 90),  # images of part of a window
    ],
)
def test_operands_of_the_wrong_shape(qkv_shape, mask_shape, order_size):
    with pytest.raises(ValueError, match="Expected q/k/v projections"):
        cpu_kernels.fused_window_attention(
            torch.randn(qkv_shape), torch.zeros(mask_shape), 3, 0.2, torch.arange(order_size)
        )


@needs_kernel
def test_orders_and_gradients_that_would_address_other_memory():
    order = torch.arange(98)
    order[5] = 98
    with pytest.raises(ValueError, match=r"tokens 0..98, outside the image's 98"):
        cpu_kernels.fused_window_attention(torch.randn(2, 98, 288), torch.zeros(1, 3, 49, 64), 3, 0.2, order)
    with pytest.raises(ValueError, match="does not match its input"):
        cpu_kernels.gelu_backward(torch.randn(4, 32), torch.randn(4, 48))
