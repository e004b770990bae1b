"""What every `hubformers train ARCHITECTURE` shares: the common options, Trainer's arguments (also under
CPU torchrun), where training ran (for model cards) and pushing the finished folder to the Hub."""

import argparse
import os
import platform
from pathlib import Path

import torch
from huggingface_hub import HfApi
from transformers import TrainingArguments

WARMUP_FRACTION = 0.1
EVAL_BATCH_SIZE = 256


def add_training_arguments(
    parser: argparse.ArgumentParser, *, epochs: float, batch_size: int, learning_rate: float
) -> None:
    """--output-dir, --epochs, --batch-size, --learning-rate, --seed and --push-to-hub, with these defaults."""
    parser.add_argument("--output-dir", type=Path, help="Where the model goes (default: outputs/ARCH-DATASET).")
    parser.add_argument("--epochs", type=float, default=epochs, help="Default: %(default)s.")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        help="Per process (times the torchrun processes). Default: %(default)s.",
    )
    parser.add_argument(
        "--learning-rate", type=float, default=learning_rate, help="Peak AdamW learning rate. Default: %(default)s."
    )
    parser.add_argument("--seed", type=int, default=0, help="Initial weights and batch order. Default: %(default)s.")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="Upload the folder to this Hub repo (at HF_ENDPOINT).")


def training_arguments(args: argparse.Namespace, **overrides) -> TrainingArguments:
    """Trainer's arguments from the common options: AdamW with warm-up and cosine decay, a log line per epoch,
    no checkpoints (the caller saves the final model once). `overrides` are further TrainingArguments."""
    distributed_on_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    settings = dict(
        output_dir=str(args.output_dir),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=EVAL_BATCH_SIZE,
        learning_rate=args.learning_rate,
        warmup_steps=WARMUP_FRACTION,  # a float below 1 is a fraction of all steps
        lr_scheduler_type="cosine",
        seed=args.seed,
        save_strategy="no",
        logging_strategy="epoch",
        report_to="none",
        disable_tqdm=False,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning warns and does nothing without a GPU
        # Under torchrun without GPUs, accelerate sets up multi-CPU DDP only when told to use the CPU (otherwise
        # every process trains alone), with gloo: every torch build has it, and nccl needs GPUs.
        use_cpu=distributed_on_cpu,
        ddp_backend="gloo" if distributed_on_cpu else None,
        ddp_find_unused_parameters=False,  # every parameter gets a gradient; the search costs a graph traversal
    )
    return TrainingArguments(**{**settings, **overrides})


def describe_hardware(world_size: int) -> str:
    """Where training ran, for the model card."""
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name()
    else:
        device = f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    return device if world_size == 1 else f"{world_size} processes (torchrun) on {device}"


def push_folder(folder: Path, repo_id: str) -> str:
    """Create the repo if needed and upload the folder as one commit; the commit URL."""
    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Train with hubformers").commit_url
