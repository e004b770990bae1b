"""Sharded training: torch's FSDP2 under `torchrun --nproc_per_node 2` (gloo, CPU) trains ViT and Longformer and
gives the weights of one process training on the whole batch; the model saved from the gathered weights loads
with them.

(`TrainingArguments(fsdp=...)` does not shard on the CPU: accelerate runs such a Trainer as DDP there, so the
sharding is tested with `fully_shard` itself.)"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_VIT, max_abs_diff
from safetensors.torch import load_file

import hubformers

WORKER = Path(__file__).with_name("fsdp_worker.py")
STEPS = 3


def vit_case():
    model = hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT))
    generator = torch.Generator().manual_seed(0)
    batch = {"pixel_values": torch.randn(4, 3, 32, 32, generator=generator), "labels": torch.tensor([0, 1, 2, 1])}
    return model, batch


def longformer_case():
    config = hubformers.LongformerConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        attention_window=[4, 4],
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,  # dropout would draw other masks in each process
        attention_probs_dropout_prob=0.0,
    )
    model = hubformers.LongformerForMaskedLM(config)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, 99, (4, 13), generator=generator)
    labels = torch.full_like(input_ids, -100)
    labels[:, ::3] = input_ids[:, ::3]  # the same number of predicted tokens in each rank's half
    return model, {"input_ids": input_ids, "labels": labels}


def train_in_one_process(model: torch.nn.Module, batch: dict, world_size: int = 2) -> list[float]:
    """The same SGD steps on the whole batch: the loss is the mean of the halves' losses, whose gradient is the
    average that FSDP's reduce-scatter forms."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    halves = [{name: tensor.chunk(world_size)[rank] for name, tensor in batch.items()} for rank in range(world_size)]
    losses = []
    for _ in range(STEPS):
        loss = sum(model(**half).loss for half in halves) / world_size
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.slow  # two processes that import transformers, per architecture: about a minute each here
@pytest.mark.parametrize("case", [vit_case, longformer_case], ids=["vit", "longformer"])
def test_fully_sharded_training_equals_one_process(tmp_path, case):
    model, batch = case()
    model.train().save_pretrained(tmp_path / "start")
    torch.save(batch, tmp_path / "batch.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(WORKER)]
    command += [str(tmp_path), type(model).__name__, str(STEPS)]
    result = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    report = torch.load(tmp_path / "report.pt")
    assert report["blocks"] >= model.config.num_hidden_layers  # every layer was sharded on its own
    losses = train_in_one_process(model, batch)
    assert losses[-1] < losses[0]
    gathered = load_file(tmp_path / "gathered.safetensors")
    trained = type(model).from_pretrained(tmp_path / "trained")
    for name, parameter in model.named_parameters():
        assert max_abs_diff(gathered[name], parameter) <= 1e-5, name
        assert torch.equal(trained.get_parameter(name), gathered[name]), name
