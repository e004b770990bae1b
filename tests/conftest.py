"""Test harness: an isolated Hugging Face cache, and tiny configs shared by the test modules."""

import os
import tempfile

# Before anything imports huggingface_hub: it reads these at import time.
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="hubformers-hf-home-"))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

TINY_VIT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    image_size=32,
    patch_size=8,
    encoder_stride=8,
    num_labels=3,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().float() - b.detach().float()).abs().max().item()
