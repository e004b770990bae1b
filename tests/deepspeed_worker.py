"""Run by tests/test_deepspeed.py under `torchrun --nproc_per_node 2` with DS_ACCELERATOR=cpu: `Trainer` with a
DeepSpeed ZeRO stage 2 config trains the saved ViT for a few steps, and rank 0 saves the model and what it saw."""

import json
import sys

import torch
from transformers import Trainer, TrainingArguments

import hubformers

folder, steps = sys.argv[1], int(sys.argv[2])
ZERO_2 = {
    "zero_optimization": {"stage": 2},
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    # DeepSpeed's fused Adam is a CUDA kernel: on the CPU the optimizer is torch's
    "optimizer": {"type": "AdamW", "params": {"lr": "auto", "torch_adam": True}},
    "zero_allow_untested_optimizer": True,
}


class Images(torch.utils.data.Dataset):
    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(32, 3, 32, 32, generator=generator)
        self.labels = torch.arange(32) % 3

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"pixel_values": self.images[index], "labels": self.labels[index]}


model = hubformers.ViTForImageClassification.from_pretrained(f"{folder}/start")
arguments = TrainingArguments(
    f"{folder}/run",
    max_steps=steps,
    per_device_train_batch_size=4,
    learning_rate=1e-3,
    logging_steps=1,
    save_strategy="no",
    report_to="none",
    use_cpu=True,
    deepspeed=ZERO_2,
)
trainer = Trainer(model=model, args=arguments, train_dataset=Images())
trainer.train()
trainer.save_model(f"{folder}/trained")
if trainer.is_world_process_zero():
    engine = trainer.model_wrapped
    weights = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    torch.save(weights, f"{folder}/weights.pt")
    report = {
        "engine": type(engine).__name__,
        "zero_stage": engine.zero_optimization_stage(),
        "world_size": engine.world_size,
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
    }
    with open(f"{folder}/report.json", "w") as file:
        json.dump(report, file)
