"""The CPU fast paths (fused_linear's oneDNN linears, cpu_kernels' C kernels, chunking's chunked calls) stand
aside for tensors that are not on the CPU. No GPU here: the `meta` device stands in for one (tensors with shapes
and no data, on a device that is not the CPU). Every architecture's tiny model runs its forward and backward on
meta while each fast path's entry point is recorded; the same recorder sees those paths taken on the CPU, so an
empty record on meta is the paths standing aside, not a recorder that sees nothing.

Off the CPU the value checks are device-side asserts, which read nothing on the host. What still does (on a GPU,
a host sync), meta tensors cannot: Longformer's count of global tokens, a size it needs. The models' runs here
stub it (`HOST_READS`) and `test_host_reads_are_the_only_thing_meta_stops` shows it is what stops the plain run.
"""

import pytest
import torch
from conftest import TINY_VIT
from test_clip import TINY_CLIP
from test_longformer import TINY_LONGFORMER
from test_swin import TINY_SWIN
from test_vae import TINY_CONV, TINY_MLP
from torch import nn
from transformers.activations import GELUActivation

import hubformers
from hubformers import chunking, cpu_kernels, fused_linear


def image_batch(device, channels: int = 3, side: int = 32) -> dict:
    return {"pixel_values": torch.rand(2, channels, side, side, device=device) * 2 - 1}


def classified_images(device) -> dict:
    return {**image_batch(device), "labels": torch.tensor([0, 2], device=device)}


# Swin with heads of 16 in every stage: the narrowest the window kernel serves, and one kernel for all stages
SWIN = {**TINY_SWIN, "embed_dim": 32, "num_heads": [2, 4, 8]}
# name -> (model, inputs on a device)
ARCHITECTURES = {
    "vit": (lambda: hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT)), classified_images),
    "swin": (lambda: hubformers.SwinForImageClassification(hubformers.SwinConfig(**SWIN)), classified_images),
    "clip": (
        lambda: hubformers.CLIPModel(hubformers.CLIPConfig(**TINY_CLIP)),
        lambda device: {
            **image_batch(device),
            "input_ids": torch.cat([torch.randint(0, 990, (2, 11)), torch.full((2, 1), 999)], 1).to(device),
            "return_loss": True,
        },
    ),
    "longformer": (
        lambda: hubformers.LongformerForMaskedLM(hubformers.LongformerConfig(**TINY_LONGFORMER)),
        lambda device: {
            "input_ids": torch.randint(3, 100, (2, 40), device=device),
            "labels": torch.randint(3, 100, (2, 40), device=device),
        },
    ),
    "vae conv": (lambda: hubformers.VAEModel(hubformers.VAEConfig(**TINY_CONV)), lambda d: image_batch(d, side=16)),
    "vae mlp": (lambda: hubformers.VAEModel(hubformers.VAEConfig(**TINY_MLP)), lambda d: image_batch(d, 1, 8)),
}
# the architectures with fast paths, and which: the VAE has none
FAST_PATHS = {
    "vit": {"onednn", "gelu kernel", "chunks"},
    "swin": {"onednn", "gelu kernel", "window kernel", "chunks"},
    "clip": {"onednn", "chunks"},
    "longformer": {"onednn", "gelu kernel", "chunks"},
}

# The checks that read values on the host (each a device-to-host sync off the CPU): file, what reads.
HOST_READS = {
    "longformer": "modeling_longformer.py AttentionMasks.build: `counts.max().item()`, the number of global tokens",
}


def stub_host_reads(monkeypatch) -> None:
    """The inputs have no global tokens: the count of global tokens that Longformer reads is 0."""
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: 0 if self.device.type == "meta" else item(self))


class Entered(list):
    """The fast paths entered, in order; with `refuse`, each raises once recorded (a C kernel or oneDNN call on
    tensors without CPU memory would crash the process instead of failing the test)."""

    refuse = True


@pytest.fixture
def entered(monkeypatch) -> Entered:
    """The fast paths entered while the test runs: each entry point recorded, then refused or run as before.
    Chunks are cut at 4 kB, so that the tiny models' activations would be split on the CPU."""
    calls = Entered()

    def recorded(module, name: str, label: str) -> None:
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls.append(label)
            if calls.refuse:
                raise AssertionError(f"a CPU fast path was entered: {label} ({module.__name__}.{name})")
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    recorded(fused_linear, "onednn_linear", "onednn")
    recorded(cpu_kernels, "window_attention_kernel", "window kernel")
    recorded(cpu_kernels, "gelu_backward_kernel", "gelu kernel")
    recorded(fused_linear, "gelu_backward_kernel", "gelu kernel")
    monkeypatch.setattr(chunking, "CHUNK_BYTES", 4096)
    chunk_size = chunking.chunk_size

    def recorded_chunk_size(tensor, dim, slice_bytes):
        chunk = chunk_size(tensor, dim, slice_bytes)
        if chunk < tensor.shape[dim]:
            calls.append("chunks")
            assert not calls.refuse, f"a CPU fast path was entered: chunks of {chunk} of {tensor.shape[dim]} slices"
        return chunk

    monkeypatch.setattr(chunking, "chunk_size", recorded_chunk_size)
    return calls


def forward_backward(model: nn.Module, inputs: dict) -> torch.Tensor:
    """The first output (the loss where the model computes one), back-propagated."""
    output = model.train()(**inputs)[0]
    output.sum().backward()
    return output


def available_fast_paths() -> set[str]:
    """The fast paths this machine runs at all (x86 with oneDNN, the C kernels compiled)."""
    paths = {"chunks"}
    if fused_linear.ONEDNN:
        paths.add("onednn")
    if cpu_kernels.gelu_backward_kernel() is not None:
        paths.add("gelu kernel")
    if cpu_kernels.window_attention_kernel(16, 16) is not None:
        paths.add("window kernel")
    return paths


@pytest.mark.parametrize("name", FAST_PATHS)
def test_the_recorder_sees_the_fast_paths_on_the_cpu(name, entered, monkeypatch):
    build, inputs = ARCHITECTURES[name]
    if name == "swin":  # its activations are wider: chunks of 4 kB would take seconds
        monkeypatch.setattr(chunking, "CHUNK_BYTES", 64 * 1024)
    entered.refuse = False
    expected = FAST_PATHS[name] & available_fast_paths()
    entered.clear()
    forward_backward(build(), inputs("cpu"))
    assert set(entered) == expected


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_meta_forward_and_backward_take_no_cpu_path(name, entered, monkeypatch):
    build, inputs = ARCHITECTURES[name]
    with torch.device("meta"):  # built there: `.to("meta")` would untie tied weights (a new Parameter each)
        model = build()
    stub_host_reads(monkeypatch)
    output = forward_backward(model, inputs("meta"))
    assert entered == []
    assert output.device.type == "meta"
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in model.parameters())


@pytest.mark.parametrize("name", HOST_READS)
def test_host_reads_are_the_only_thing_meta_stops(name):
    """Without the stubs the same run stops at a value read on the host: the place named in HOST_READS."""
    build, inputs = ARCHITECTURES[name]
    with torch.device("meta"):
        model = build()
    with pytest.raises((RuntimeError, NotImplementedError), match="meta"):
        forward_backward(model, inputs("meta"))


def meta_operands(*shapes, requires_grad: bool = False) -> list[torch.Tensor]:
    return [torch.randn(*shape, device="meta", requires_grad=requires_grad) for shape in shapes]


def test_entry_points_refuse_meta_tensors():
    x, weight, bias = meta_operands((4, 8), (16, 8), (16,))
    assert not fused_linear.runs_fused(x, weight, bias)
    assert not cpu_kernels.runs_kernels(x, weight)
    assert not cpu_kernels.runs_window_attention_kernel(16, 16, x)
    mixed = (torch.randn(4, 8), torch.randn(16, 8, device="meta"))  # one operand off the CPU is enough
    assert not fused_linear.runs_fused(*mixed) and not cpu_kernels.runs_kernels(*mixed)
    if fused_linear.ONEDNN:  # the same operands on the CPU do take the paths
        assert fused_linear.runs_fused(torch.randn(4, 8), torch.randn(16, 8), torch.randn(16))
        assert cpu_kernels.runs_kernels(torch.randn(4, 8))


@pytest.mark.parametrize("post_op", ["none", "gelu", "residual"])
def test_linear_and_linear_layer_run_plain_ops_on_meta(post_op, entered):
    x, weight, bias, residual = meta_operands((2, 3, 8), (16, 8), (16,), (2, 3, 16), requires_grad=True)
    options = {"gelu": {"gelu": True}, "residual": {"residual": residual}}.get(post_op, {})
    output = fused_linear.linear(x, weight, bias, **options)
    output.sum().backward()
    layer = nn.Linear(8, 16, device="meta")
    activation = GELUActivation() if post_op == "gelu" else None
    layer_output = fused_linear.linear_layer(
        layer, x, activation=activation, residual=residual if post_op == "residual" else None
    )
    layer_output.sum().backward()
    assert entered == []
    assert output.shape == layer_output.shape == (2, 3, 16) and output.device.type == "meta"
    assert x.grad.shape == x.shape and layer.weight.grad.shape == (16, 8)


def test_map_chunks_calls_once_on_meta(entered):
    pieces = []
    tensor = torch.randn(64, 32, device="meta")
    output = chunking.map_chunks(lambda t: pieces.append(t.shape) or t * 2, (tensor,), 0, slice_bytes=128)
    assert pieces == [(64, 32)] and output.shape == (64, 32) and entered == []
    entered.refuse = False
    chunking.map_chunks(lambda t: pieces.append(t.shape) or t * 2, (torch.randn(64, 32),), 0, slice_bytes=128)
    assert pieces[1:] == [(32, 32)] * 2 and entered == ["chunks"]  # the CPU twin is cut at CHUNK_BYTES
