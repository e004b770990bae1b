"""The C kernels against PyTorch's ops. Window attention: outputs, probabilities, and the gradients of q/k/v and
of the mask, for window sizes whose rows are and are not whole vectors, one mask or one per window position,
heads of 16 to 64 floats and any thread count. GELU's backward: the input's and the bias's gradients over the
whole range of inputs, for widths that are and are not whole vectors. The fallbacks where no kernel can run,
and a mask of the wrong shape. Window and head sizes up to the limits and past them, each under a watchdog in
a fresh process (a kernel whose row loop does not end fails there). The cache: damaged libraries (in a fresh
process, as dlopen of a truncated one ends it with SIGBUS) are built again, and libraries that another user
could have written are never loaded."""

import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hubformers import cpu_kernels
from hubformers.modeling_swin import window_order

needs_kernel = pytest.mark.skipif(
    cpu_kernels.window_attention_kernel(16, 16) is None, reason="the C kernels need Linux x86-64 and a C compiler"
)


WINDOW_SYMBOLS = ("window_attention_forward", "window_attention_backward")


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
    assert cpu_kernels.window_attention_kernel(16, 400) is None  # a row's 25 vectors would fill the registers
    monkeypatch.setenv("HUBFORMERS_CPU_KERNELS", "0")
    assert not cpu_kernels.enabled()
    monkeypatch.setenv("HUBFORMERS_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")
    assert cpu_kernels.compile_library(cpu_kernels.WINDOW_ATTENTION_SOURCE, {"N": 49, "D": 32}, WINDOW_SYMBOLS) is None
    assert "no fused CPU kernel" in caplog.text
    assert not list(tmp_path.rglob("*.so"))


@needs_kernel
def test_libraries_are_cached_by_source_and_sizes(monkeypatch, tmp_path, caplog):
    """Built under a umask that lets the group write (and in a folder below sticky /tmp), the cache's folders
    and files are the user's alone, so that later loads trust them."""
    monkeypatch.setenv("HUBFORMERS_CACHE", str(tmp_path / "cache"))
    umask = os.umask(0o002)
    try:
        first = cpu_kernels.compile_library(cpu_kernels.WINDOW_ATTENTION_SOURCE, {"N": 16, "D": 16}, WINDOW_SYMBOLS)
    finally:
        os.umask(umask)
    built = list(tmp_path.rglob("*.so"))
    assert first is not None and len(built) == 1
    written = [tmp_path / "cache" / "hubformers", built[0].parent, built[0], cpu_kernels.digest_file(built[0])]
    assert all(cpu_kernels.private(path.stat()) for path in written)

    def no_compiler(*args, **kwargs):
        raise OSError("no compiler")

    monkeypatch.setattr(cpu_kernels.subprocess, "run", no_compiler)
    # a second load reads the cache; other sizes need another build
    assert cpu_kernels.compile_library(cpu_kernels.WINDOW_ATTENTION_SOURCE, {"N": 16, "D": 16}, WINDOW_SYMBOLS)
    assert cpu_kernels.compile_library(cpu_kernels.WINDOW_ATTENTION_SOURCE, {"N": 25, "D": 16}, WINDOW_SYMBOLS) is None
    assert list(tmp_path.rglob("*.so")) == built
    assert "private temporary folder" not in caplog.text


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


def run_isolated(*functions, call: str, timeout: float, **environ: str) -> subprocess.CompletedProcess:
    """Runs `call` in a fresh interpreter that has torch, `functions` (their source) and `cpu_kernels` (loaded from its
    file: the package's import, transformers included, takes seconds), with `environ` added; returns its outputs.
    A hang ends it at `timeout` seconds, a crash (a SIGBUS) ends it alone: either fails the test, not pytest."""
    code = "\n".join(
        [
            "import importlib.util",
            "import torch",
            f"spec = importlib.util.spec_from_file_location('cpu_kernels', {cpu_kernels.__file__!r})",
            "cpu_kernels = importlib.util.module_from_spec(spec)",
            "spec.loader.exec_module(cpu_kernels)",
            *(inspect.getsource(function) for function in functions),
            call,
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"exit status {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def check_window_sizes(cpu_kernels, shapes, seconds):
    """For each (tokens, head_dim): where a kernel is compiled, its outputs and gradients against PyTorch's ops,
    else a ValueError from the forward; each within `seconds` (faulthandler's watchdog thread ends the process
    also while C code runs). Prints which ran."""
    import faulthandler

    torch.manual_seed(0)
    torch.set_num_threads(2)  # a worker thread's stack too
    for tokens, head_dim in shapes:
        print(tokens, head_dim, end=" ", flush=True)
        faulthandler.dump_traceback_later(seconds, exit=True)
        qkv, mask = (operand.requires_grad_() for operand in random_operands(2, tokens, 1, head_dim, 1))
        padded, (images, order) = cpu_kernels.pad_mask(mask), as_images(qkv, 1)
        if cpu_kernels.window_attention_kernel(tokens, head_dim) is None:
            try:
                cpu_kernels.fused_window_attention(images, padded, 1, head_dim**-0.5, order)
                raise AssertionError("a forward without a kernel")
            except ValueError:
                print("pytorch", flush=True)
            continue
        grad_output = torch.randn(2, tokens, head_dim)
        expected, _ = reference_attention(qkv, mask, 1, head_dim**-0.5)
        expected_grads = torch.autograd.grad(expected, (qkv, mask), grad_output)
        output = cpu_kernels.FusedWindowAttention.apply(images, padded, 1, head_dim**-0.5, order).view_as(expected)
        grads = torch.autograd.grad(output, (qkv, mask), grad_output)
        faulthandler.cancel_dump_traceback_later()
        assert (output - expected).abs().max() <= 1e-5
        for got, want in zip(grads, expected_grads, strict=True):
            assert (got - want).abs().max() <= 1e-5
        print("kernel", flush=True)


# windows of 1 to 256 tokens (and one more), heads of 16 to 1024 floats: the kernel runs up to 384
SERVED = [(1, 16), (49, 48), (144, 128), (256, 16), (1, 384), (49, 384), (256, 384)]
NOT_SERVED = [(49, 24), (257, 16), (16, 400), (49, 400), (256, 512), (1, 1024), (256, 1024)]


@needs_kernel
def test_window_sizes_up_to_the_limits_return():
    """Heads of 400 floats and more made a block of 0 rows (the accumulators of one row fill the registers), and
    the row loop never advanced: the sizes the kernel serves match PyTorch's ops, forward and backward; the
    others get no kernel. The C side's blocks have a row at least: a kernel built for heads of 400 floats (not
    served) returns, with PyTorch's results."""
    output = run_isolated(
        reference_attention,
        as_images,
        random_operands,
        check_window_sizes,
        call=f"check_window_sizes(cpu_kernels, {SERVED + NOT_SERVED}, 60)\n"
        "cpu_kernels.serves_window = lambda tokens, head_dim: head_dim % 16 == 0\n"
        "cpu_kernels.window_attention_kernel.cache_clear()\n"
        "check_window_sizes(cpu_kernels, [(16, 400)], 60)",
        timeout=600,
    ).stdout
    expected = [f"{t} {d} kernel" for t, d in SERVED] + [f"{t} {d} pytorch" for t, d in NOT_SERVED] + ["16 400 kernel"]
    assert output.splitlines() == expected


GELU_SYMBOLS = ("gelu_backward",)


def gelu_library(cache) -> Path:
    """Where the GELU kernel's library lies in the cache folder `cache` (as HUBFORMERS_CACHE)."""
    name = cpu_kernels.library_name(cpu_kernels.GELU_BACKWARD_SOURCE, cpu_kernels.compile_command({}))
    return Path(cache, "hubformers", "kernels", name)


def check_gelu_kernels(cpu_kernels, caches):
    """For each (cache folder, compiler): the GELU kernel as a fresh process loads it, against PyTorch's op
    where there is one. Prints which ran."""
    import os

    for cache, compiler in caches:
        os.environ["HUBFORMERS_CACHE"], os.environ["CC"] = cache, compiler
        cpu_kernels.gelu_backward_kernel.cache_clear()
        print(cache, end=" ", flush=True)
        if cpu_kernels.gelu_backward_kernel() is None:
            print("pytorch", flush=True)
            continue
        grad, pre = torch.randn(5, 40), torch.randn(5, 40) * 4
        grad_pre, grad_bias = cpu_kernels.gelu_backward(grad, pre)
        expected = torch.ops.aten.gelu_backward(grad, pre)
        assert (grad_pre - expected).abs().max() <= 1e-6 * grad.abs().max()
        assert (grad_bias - expected.sum(0)).abs().max() <= 1e-5
        print("kernel", flush=True)


def truncate(size):
    def damage(library):
        with open(library, "r+b") as file:  # in place, as a full disk or a crash leaves it
            file.truncate(size(library.stat().st_size))

    return damage


def other_symbols(library):
    cpu_kernels.build_library("int other(void) { return 1; }", cpu_kernels.compile_command({}), library)


DAMAGES = {
    "half": truncate(lambda size: size // 2),
    "4k": truncate(lambda size: 4096),
    "others": other_symbols,  # a whole library, its digest too, without the kernel's functions
    "undigested": lambda library: cpu_kernels.digest_file(library).unlink(),
    "mismatch": lambda library: cpu_kernels.digest_file(library).write_text(f"{'0' * 64} {library.stat().st_size}"),
}


@needs_kernel
def test_damaged_libraries_are_built_again(tmp_path):
    """A cached library truncated (to half, to 4 KiB: dlopen ends the process with SIGBUS), one without the
    kernel's functions, one without a digest or with another: a fresh process builds it again and runs the
    kernel, and the cache is whole again. Where it cannot build it (no compiler), PyTorch's ops run, with one
    warning."""
    caches = {}
    for name, damage in DAMAGES.items():
        library = gelu_library(tmp_path / name)
        library.parent.mkdir(parents=True, mode=0o700)
        cpu_kernels.build_library(cpu_kernels.GELU_BACKWARD_SOURCE, cpu_kernels.compile_command({}), library)
        damage(library)
        caches[name] = library
    shutil.copytree(tmp_path / "half", tmp_path / "no compiler")
    runs = [(str(tmp_path / name), os.environ.get("CC", "cc")) for name in DAMAGES] + [
        (str(tmp_path / "no compiler"), "false")
    ]
    result = run_isolated(check_gelu_kernels, call=f"check_gelu_kernels(cpu_kernels, {runs})", timeout=300)
    assert result.stderr.count("hubformers:") == result.stderr.count("no fused CPU kernel") == 1
    assert result.stdout.splitlines() == [f"{cache} kernel" for cache, _ in runs[:-1]] + [f"{runs[-1][0]} pytorch"]
    for library in caches.values():
        assert cpu_kernels.intact(library)
    assert not cpu_kernels.intact(gelu_library(tmp_path / "no compiler"))


def planted_library(library, marker):
    """Builds at `library`, digest and all, a library with the GELU kernel's function that does nothing, and
    writes `marker` when it is loaded: what another user could put in a shared cache."""
    source = f"""
        #include <stdio.h>
        __attribute__((constructor)) static void planted(void) {{ FILE *f = fopen("{marker}", "w"); fclose(f); }}
        void gelu_backward(void) {{}}
    """
    cpu_kernels.build_library(source, cpu_kernels.compile_command({}), library)


OTHER_USER = 12345
FLAWS = {  # what lets another user write there: (path relative to the cache root, chmod mode or chown uid)
    "a world-writable folder above": ("", 0o777),
    "a folder above of another user": ("", OTHER_USER),
    "a world-writable cache folder": ("hubformers/kernels", 0o777),
    "a group-writable cache folder": ("hubformers/kernels", 0o770),
    "a cache folder of another user": ("hubformers/kernels", OTHER_USER),
    "a library of another user": ("library", OTHER_USER),
    "a library others may write to": ("library", 0o666),
    "a digest of another user": ("digest", OTHER_USER),
}


@pytest.fixture
def fresh_gelu_kernel():
    cpu_kernels.gelu_backward_kernel.cache_clear()
    yield
    cpu_kernels.gelu_backward_kernel.cache_clear()


@needs_kernel
@pytest.mark.parametrize("flaw", FLAWS)
def test_libraries_others_could_write_are_not_loaded(flaw, tmp_path, monkeypatch, caplog, fresh_gelu_kernel):
    """A library planted in a cache that another user may write to (a folder on the way writable by others or
    theirs, or the library or its digest) is never loaded: the kernel is built in a private temporary folder
    (untrusted folders, with a warning) or again in the cache (untrusted files), and its results are right."""
    relative, change = FLAWS[flaw]
    if isinstance(change, int) and change == OTHER_USER and os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    cache, marker = tmp_path / "cache", tmp_path / "planted-library-was-loaded"
    library = gelu_library(cache)
    library.parent.mkdir(parents=True, mode=0o700)
    planted_library(library, marker)
    planted = library.read_bytes()
    path = {"library": library, "digest": cpu_kernels.digest_file(library)}.get(relative, cache / relative)
    if change == OTHER_USER:
        os.chown(path, OTHER_USER, -1)
    else:
        path.chmod(change)
    monkeypatch.setenv("HUBFORMERS_CACHE", str(cache))

    grad, pre = torch.randn(6, 48), torch.randn(6, 48) * 4
    grad_pre, grad_bias = cpu_kernels.gelu_backward(grad, pre)
    expected = torch.ops.aten.gelu_backward(grad, pre)
    assert (grad_pre - expected).abs().max() <= 1e-6 * grad.abs().max()
    assert (grad_bias - expected.sum(0)).abs().max() <= 1e-5
    assert not marker.exists()
    if relative in ("library", "digest"):  # built again in place
        assert cpu_kernels.intact(library) and library.read_bytes() != planted
    else:
        assert library.read_bytes() == planted
        assert not Path(cpu_kernels.gelu_backward_kernel()._name).exists()  # the private folder is removed
        assert "private temporary folder" in caplog.text


def check_swin_with_heads_of_400(folder):
    """transformers' Swin and ours with one head of 400 floats (too many for the kernel, whose row loop did not
    end there), random weights: last hidden states with and without gradients, and the pixels' gradient."""
    import transformers

    import hubformers

    torch.manual_seed(0)
    config = dict(image_size=16, patch_size=4, embed_dim=400, depths=[1], num_heads=[1], window_size=4)
    reference = transformers.SwinModel(transformers.SwinConfig(**config)).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.normal_(0.0, 0.2)
    reference.save_pretrained(folder)
    ours = hubformers.SwinModel.from_pretrained(folder).eval()
    pixels = torch.randn(2, 3, 16, 16, requires_grad=True)
    expected = reference(pixels).last_hidden_state
    output = ours(pixels).last_hidden_state
    with torch.no_grad():
        inference = ours(pixels).last_hidden_state
    grad = torch.randn_like(expected)
    assert (output - expected).abs().max() <= 1e-5 and (inference - expected).abs().max() <= 1e-5
    (expected_grad,), (got,) = torch.autograd.grad(expected, pixels, grad), torch.autograd.grad(output, pixels, grad)
    assert (got - expected_grad).abs().max() <= 1e-5
    print("returned", flush=True)


@pytest.mark.slow  # imports transformers and hubformers in a fresh process
def test_swin_with_heads_too_large_for_the_kernel_returns(tmp_path):
    result = run_isolated(
        check_swin_with_heads_of_400, call=f"check_swin_with_heads_of_400({str(tmp_path)!r})", timeout=300
    )
    assert result.stdout == "returned\n"
