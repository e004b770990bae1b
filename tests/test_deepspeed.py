"""DeepSpeed ZeRO stage 2 through `Trainer` on the CPU: two processes under torchrun (DeepSpeed's CPU
accelerator), the optimizer state partitioned across them; the loss falls and the saved model loads with the
trained weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_VIT

import hubformers

# not in the test extra: installed, DeepSpeed prints to stdout whenever transformers is imported, which other
# tests read; `pip install deepspeed` to run this one
pytest.importorskip("deepspeed")
WORKER = Path(__file__).with_name("deepspeed_worker.py")
STEPS = 8


@pytest.mark.slow  # two processes that import transformers and DeepSpeed: about a minute here
def test_zero_stage_2_trains_with_trainer_on_the_cpu(tmp_path):
    hubformers.ViTForImageClassification(hubformers.ViTConfig(**TINY_VIT)).save_pretrained(tmp_path / "start")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(WORKER)]
    result = subprocess.run(
        [*command, str(tmp_path), str(STEPS)], check=False, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["engine"] == "DeepSpeedEngine" and report["zero_stage"] == 2 and report["world_size"] == 2
    losses = report["losses"]
    assert len(losses) == STEPS and sum(losses[-2:]) < sum(losses[:2])
    trained = hubformers.ViTForImageClassification.from_pretrained(tmp_path / "trained")
    start = hubformers.ViTForImageClassification.from_pretrained(tmp_path / "start")
    weights = torch.load(tmp_path / "weights.pt")
    for name, parameter in trained.named_parameters():
        assert torch.equal(parameter, weights[name]), name
    assert not torch.equal(trained.classifier.weight, start.classifier.weight)
