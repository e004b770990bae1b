"""What every `hubformers train ARCHITECTURE` shares: the common options, Trainer's arguments (also under
CPU torchrun), the output folder (checkpoints, resuming, the final model swapped in whole), where training ran
(for model cards) and pushing the finished folder to the Hub."""

import argparse
import contextlib
import ctypes
import json
import math
import os
import platform
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from huggingface_hub import HfApi
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

WARMUP_FRACTION = 0.1
EVAL_BATCH_SIZE = 256


def bounded(kind: type, minimum: float, *, or_equal: bool = False) -> Callable[[str], int | float]:
    """argparse type: a finite `kind` (int or float) above `minimum` (or equal to it with `or_equal`); argparse
    reports anything else as "argument --flag: expected ..., got 'value'"."""
    expected = f"{'an integer' if kind is int else 'a number'} {'>=' if or_equal else '>'} {minimum:g}"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value >= minimum if or_equal else value > minimum)):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = bounded(int, 0)
positive_float = bounded(float, 0)
non_negative_int = bounded(int, 0, or_equal=True)
non_negative_float = bounded(float, 0, or_equal=True)


def add_training_arguments(
    parser: argparse.ArgumentParser, *, epochs: float, batch_size: int, learning_rate: float
) -> None:
    """--output-dir, --epochs, --batch-size, --learning-rate, --seed and --push-to-hub, with these defaults, and
    the options of checkpoints and the output folder."""
    parser.add_argument("--output-dir", type=Path, help="Where the model goes (default: outputs/ARCH-DATASET).")
    parser.add_argument("--epochs", type=positive_float, default=epochs, help="Default: %(default)s.")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=batch_size,
        help="Per process (times the torchrun processes). Default: %(default)s.",
    )
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=learning_rate,
        help="Peak AdamW learning rate. Default: %(default)s.",
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="Initial weights and batch order. Default: %(default)s."
    )
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="Upload the folder to this Hub repo (at HF_ENDPOINT).")
    parser.add_argument(
        "--save-strategy",
        choices=["epoch", "steps", "no"],
        default="epoch",
        help="When to write a checkpoint (OUTPUT_DIR/checkpoint-STEP: weights in safetensors, optimizer, "
        "scheduler and RNG states) that --resume continues from. They go once the final model is saved. "
        "Default: %(default)s.",
    )
    parser.add_argument(
        "--save-steps",
        type=positive_int,
        default=500,
        help="Optimizer steps between checkpoints with --save-strategy steps. Default: %(default)s.",
    )
    parser.add_argument(
        "--save-total-limit",
        type=positive_int,
        default=2,
        help="Keep only the newest N checkpoints. Default: %(default)s.",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        type=Path,
        metavar="CHECKPOINT",
        help="Continue an interrupted run: from the latest checkpoint in --output-dir, or from this checkpoint "
        "folder. Use the interrupted run's options.",
    )
    parser.add_argument(
        "--overwrite-output-dir",
        action="store_true",
        help="Replace what --output-dir holds. Without it a non-empty folder is refused, unless --resume "
        "continues the checkpoints it holds. The previous content stays until the new model is complete.",
    )


def training_arguments(args: argparse.Namespace, **overrides) -> TrainingArguments:
    """Trainer's arguments from the common options: AdamW with warm-up and cosine decay, a log line per epoch,
    checkpoints as the options ask. `overrides` are further TrainingArguments."""
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
        save_strategy=args.save_strategy,
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
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


def checkpoints(folder: Path) -> list[Path]:
    """Trainer's checkpoint-STEP folders in `folder`."""
    return [path for path in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if path.is_dir()] if folder.is_dir() else []


def prepare_output_dir(args: argparse.Namespace) -> str | None:
    """Check that this run may write to `args.output_dir` (empty or missing; holding checkpoints when resuming;
    anything with --overwrite-output-dir) and clear stale checkpoints; the checkpoint to resume from, or None.
    Refusals are FileExistsError or FileNotFoundError, one line each, before any data loads."""
    output = args.output_dir
    contents = sorted(path.name for path in output.iterdir()) if output.is_dir() else []
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"--output-dir {output} is a file, not a folder")
    if args.resume is True:
        resume = get_last_checkpoint(output) if output.is_dir() else None
        if resume is None:
            raise FileNotFoundError(f"--resume: {output} holds no {PREFIX_CHECKPOINT_DIR}-STEP folder to resume from")
    elif args.resume:
        if not (args.resume / "trainer_state.json").is_file():
            raise FileNotFoundError(f"--resume: {args.resume} is not a Trainer checkpoint (no trainer_state.json)")
        resume = str(args.resume)
    else:
        resume = None
    own = resume is not None and bool(checkpoints(output))
    if contents and not own and not args.overwrite_output_dir:
        shown = ", ".join(contents[:3]) + (", ..." if len(contents) > 3 else "")
        hint = "--resume to continue its checkpoints, " if checkpoints(output) else ""
        raise FileExistsError(
            f"--output-dir {output} is not empty ({shown}); pass {hint}--overwrite-output-dir to replace it, "
            "or choose another folder"
        )
    if resume is None and is_main_process():
        for stale in checkpoints(output):  # a new run's checkpoints must not mix with an earlier run's
            shutil.rmtree(stale)
    return resume


def is_main_process() -> bool:
    """Rank 0 (or no torchrun), known before Trainer sets up the processes."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def final_folder(trainer: Trainer) -> Iterator[Path]:
    """A folder beside the output folder to write the finished model into; when the block succeeds it replaces
    the output folder (checkpoints included) in one step, so that a crash while saving leaves the previous
    content as it was. Only rank 0 writes; the others get the path and nothing happens on their exit."""
    output = Path(trainer.args.output_dir).resolve()
    staging = output.with_name(f".{output.name}.saving")
    if not trainer.is_world_process_zero():
        yield staging
        return
    shutil.rmtree(staging, ignore_errors=True)  # what a killed save left
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_folder(output, staging)


def replace_folder(target: Path, new: Path) -> None:
    """Put folder `new` at `target` and delete what `target` held: one atomic exchange where the OS offers it
    (Linux), otherwise two renames."""
    if not target.exists():
        new.rename(target)
        return
    if exchange(new, target):
        shutil.rmtree(new)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    target.rename(old)
    new.rename(target)
    shutil.rmtree(old)


def exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically with Linux's renameat2(RENAME_EXCHANGE); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2  # from <fcntl.h> and <linux/fs.h>
    return renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0


def save_metrics(folder: Path, split: str, metrics: dict) -> None:
    """`SPLIT_results.json`, as `Trainer.save_metrics` writes it, in `folder`."""
    (folder / f"{split}_results.json").write_text(json.dumps(metrics, indent=4, sort_keys=True))


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
