"""Run by tests/test_clip_distributed.py under `torchrun --nproc_per_node 2`: each rank takes its half of the
saved batch, computes CLIP's loss under DDP (gloo) and saves the loss and the averaged gradients."""

import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import hubformers

folder = sys.argv[1]
dist.init_process_group("gloo")
rank, world_size = dist.get_rank(), dist.get_world_size()
saved = torch.load(f"{folder}/inputs.pt")
model = hubformers.CLIPModel.from_pretrained(folder).train()
ddp = DistributedDataParallel(model)
local = {name: tensor.chunk(world_size)[rank] for name, tensor in saved.items()}
loss = ddp(**local, return_loss=True).loss
loss.backward()
gradients = {name: p.grad for name, p in model.named_parameters()}
torch.save({"loss": loss.detach(), "gradients": gradients}, f"{folder}/rank{rank}.pt")
dist.destroy_process_group()
