"""Run by tests/test_fsdp.py under `torchrun --nproc_per_node 2`: torch's FSDP2 (`fully_shard` on every block
that `_no_split_modules` names, then on the whole model; gloo on the CPU) trains the saved model for a few SGD
steps, each rank on its half of the saved batch; the full weights are gathered and rank 0 saves them with
`save_pretrained`, and the losses it saw."""

import sys

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard
from transformers import AutoModel

import hubformers

folder, model_class, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
dist.init_process_group("gloo")
rank, world_size = dist.get_rank(), dist.get_world_size()
model = getattr(hubformers, model_class).from_pretrained(f"{folder}/start").train()
blocks = [module for module in model.modules() if type(module).__name__ in model._no_split_modules]
for block in blocks:
    fully_shard(block)
fully_shard(model)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
batch = {name: tensor.chunk(world_size)[rank] for name, tensor in torch.load(f"{folder}/batch.pt").items()}
losses = []
for _ in range(steps):
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    losses.append(loss.item())
weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
if rank == 0:
    save_file({name: tensor.contiguous() for name, tensor in weights.items()}, f"{folder}/gathered.safetensors")
    trained = getattr(hubformers, model_class).from_pretrained(f"{folder}/start")
    trained.load_state_dict(weights)
    trained.save_pretrained(f"{folder}/trained")
    assert type(AutoModel.from_pretrained(f"{folder}/trained")).__module__.startswith("hubformers")
    torch.save({"blocks": len(blocks), "losses": losses}, f"{folder}/report.pt")
dist.destroy_process_group()
