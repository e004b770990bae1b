"""CLIP under torch.distributed: the loss gathers every rank's features with their gradients, so two processes
(torchrun, gloo, DDP) give the loss and the gradients of one process on the concatenated batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import max_abs_diff
from test_clip import TINY_CLIP, images, texts

import hubformers

WORKER = Path(__file__).with_name("clip_distributed_worker.py")


@pytest.mark.slow  # two processes that import transformers: most of a minute on two shared cores
def test_two_processes_give_the_loss_and_gradients_of_the_global_batch(tmp_path):
    model = hubformers.CLIPModel(hubformers.CLIPConfig(**TINY_CLIP)).train()
    model.save_pretrained(tmp_path)
    input_ids, attention_mask = texts(batch_size=6, eos_positions=(5, 11, 8, 3, 9, 11))
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=images(6))
    torch.save(inputs, tmp_path / "inputs.pt")

    loss = model(**inputs, return_loss=True).loss
    loss.backward()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(WORKER), str(tmp_path)]
    result = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]

    local_only = 0.0
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert abs(got["loss"].item() - loss.item()) <= 1e-6, rank
        for name, parameter in model.named_parameters():  # fp32, summed in another order: 1e-5
            assert max_abs_diff(got["gradients"][name], parameter.grad) <= 1e-5, (rank, name)
        local_only = max(local_only, abs(got["loss"].item() - half_batch_loss(model, inputs, rank)))
    assert local_only > 1e-3  # the negatives of the other rank's half matter: without the gather it would differ


def half_batch_loss(model: hubformers.CLIPModel, inputs: dict, rank: int) -> float:
    with torch.no_grad():
        return model(**{name: t.chunk(2)[rank] for name, t in inputs.items()}, return_loss=True).loss.item()
