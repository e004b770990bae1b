"""Test harness: a loopback Hub and an isolated Hugging Face cache, and tiny configs shared by the tests."""

import os

from hub_server import get_hub, reserve_endpoint

# Before anything imports huggingface_hub (it reads these at import time): loopback HF_ENDPOINT, throwaway
# HF_HOME / HF_HUB_CACHE, HF_TOKEN, telemetry and Xet off. An accidental Hub download fails fast.
reserve_endpoint()
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


@pytest.fixture(scope="session")
def hub():
    """The loopback Hub, started on first use; then use huggingface_hub / transformers as usual."""
    return get_hub()
