"""Chunked position-wise layers and chunked Longformer blocks: the same outputs and gradients as the reference
models when every layer runs in many chunks (a budget of a few hundred bytes), and chunks that really happen;
Longformer's inference path (global keys merged by log-sum-exp) equal to its training path (concatenated)."""

import pytest
import test_longformer
import test_swin
import test_vit
import torch
import transformers
from conftest import max_abs_diff

import hubformers
from hubformers import chunking, longformer_fast_paths

TOL = 1e-5


@pytest.fixture
def tiny_chunks(monkeypatch):
    """A budget of 256 bytes: a few tokens per feed-forward chunk, one Longformer block per chunk."""
    monkeypatch.setattr(chunking, "CHUNK_BYTES", 256)


@pytest.fixture
def block_calls(monkeypatch):
    """The blocks of each attention call of Longformer's inference path (once per chunk of blocks)."""
    calls = []
    attend = longformer_fast_paths.attend_merging_global

    def counted(query, *args):
        calls.append(query.shape[0])
        return attend(query, *args)

    monkeypatch.setattr(longformer_fast_paths, "attend_merging_global", counted)
    return calls


def test_map_chunks_runs_chunks_within_the_budget_and_concatenates(monkeypatch):
    monkeypatch.setattr(chunking, "CHUNK_BYTES", 3 * 16)  # 3 slices of 16 bytes each
    seen = []

    def double(a, b):
        seen.append(a.shape[1])
        return a * 2 + b

    a, b = torch.randn(4, 10, 5), torch.randn(4, 10, 5)
    assert torch.equal(chunking.map_chunks(double, (a, b), 1, slice_bytes=16), a * 2 + b)
    assert seen == [3, 3, 3, 1]


def test_in_row_chunks_keeps_the_leading_shape(monkeypatch):
    monkeypatch.setattr(chunking, "CHUNK_BYTES", 4 * 8 * 4)  # 4 rows of an 8-wide float32 activation
    rows = []
    linear = torch.nn.Linear(6, 8)

    def layer(x):
        rows.append(x.shape[0])
        return linear(x)

    x = torch.randn(2, 5, 6)
    with torch.no_grad():
        # the same rows, rounded alike up to the GEMM's kernel for short calls (an ulp on some CPUs)
        assert max_abs_diff(chunking.in_row_chunks(layer, x, width=8), linear(x)) <= 1e-6
    assert rows == [4, 4, 2]


def test_no_chunks_where_they_do_not_pay(monkeypatch):
    """One call when everything fits, and on the meta device (as on any device but the CPU)."""
    calls = []

    def layer(x):
        calls.append(x.shape)
        return x

    chunking.in_row_chunks(layer, torch.randn(3, 4), width=4)
    monkeypatch.setattr(chunking, "CHUNK_BYTES", 16)
    chunking.in_row_chunks(layer, torch.empty(3, 4, device="meta"), width=4)
    assert calls == [torch.Size([3, 4]), torch.Size([3, 4])]


def test_vit_in_chunks_matches_transformers(tmp_path, tiny_chunks):
    reference, ours = test_vit.reference_and_ours(
        tmp_path, transformers.ViTForImageClassification, hubformers.ViTForImageClassification
    )
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_abs_diff(reference(pixel_values).logits, ours(pixel_values).logits) <= TOL


def test_swin_in_chunks_matches_transformers(tmp_path, tiny_chunks):
    folder = test_swin.reference_folder(tmp_path, transformers.SwinForImageClassification)
    reference = transformers.SwinForImageClassification.from_pretrained(folder).eval()
    ours = hubformers.SwinForImageClassification.from_pretrained(folder).eval()
    pixel_values = torch.randn(2, 3, 40, 28)  # padding at every stage
    batch_sizes = []
    for stage in ours.swin.encoder.layers:
        stage.blocks[0].register_forward_pre_hook(lambda module, args: batch_sizes.append(args[0].shape[0]))
    with torch.no_grad():
        assert max_abs_diff(reference(pixel_values).logits, ours(pixel_values).logits) <= TOL
    assert batch_sizes == [1, 1] * len(ours.swin.encoder.layers)  # every stage ran one image at a time


def test_swin_gradients_in_chunks_equal_whole(monkeypatch):
    torch.manual_seed(0)
    model = test_swin.randomize(hubformers.SwinForImageClassification(hubformers.SwinConfig(**test_swin.TINY_SWIN)))
    pixel_values, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])

    def gradients():
        model.zero_grad()
        model(pixel_values, labels=labels).loss.backward()
        return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}

    whole = gradients()
    monkeypatch.setattr(chunking, "CHUNK_BYTES", 256)
    chunked = gradients()
    assert max(max_abs_diff(whole[name], chunked[name]) for name in whole) <= TOL


@pytest.mark.parametrize("padded_tail, global_positions", [(0, ()), (3, (0, 5)), (2, (1, 2, 3))])
def test_longformer_in_chunks_matches_transformers(tmp_path, tiny_chunks, block_calls, padded_tail, global_positions):
    reference, ours = test_longformer.reference_and_ours(
        tmp_path, transformers.LongformerModel, hubformers.LongformerModel
    )
    batch_inputs = test_longformer.inputs(2, 30, padded_tail, global_positions)
    with torch.no_grad():
        expected, got = reference(**batch_inputs), ours(**batch_inputs)
    assert max_abs_diff(expected.last_hidden_state, got.last_hidden_state) <= TOL
    # every block on its own: 2 rows x 16 (window 4) or 8 (window 8) blocks of the padded 32 tokens
    assert block_calls == [2] * 16 + [2] * 8


@pytest.mark.parametrize("chunk_bytes", [256, chunking.CHUNK_BYTES])
def test_longformer_inference_path_equals_training_path(tmp_path, monkeypatch, chunk_bytes):
    """Without gradients the global keys are merged by log-sum-exp; with them, concatenated to every block."""
    monkeypatch.setattr(chunking, "CHUNK_BYTES", chunk_bytes)
    _, ours = test_longformer.reference_and_ours(tmp_path, transformers.LongformerModel, hubformers.LongformerModel)
    batch_inputs = test_longformer.inputs(2, 30, 3, (0, 5))
    with torch.no_grad():
        merged = ours(**batch_inputs).last_hidden_state
    concatenated = ours(**batch_inputs).last_hidden_state
    assert concatenated.requires_grad and max_abs_diff(merged, concatenated) <= TOL
