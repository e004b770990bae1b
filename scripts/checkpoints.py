"""Reading other libraries' checkpoints safely, for the `hubformers convert` sources.

safetensors files load as they are; pickle-based files (.pth/.pt/.bin) can run code when loaded, so they are
read only when the caller asks for it, and then with `torch.load(weights_only=True)`.
"""

import argparse
import json
from pathlib import Path

import torch

# Prefixes that wrappers add to every key: DistributedDataParallel ("module.") and torch.compile ("_orig_mod.").
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def json_object(text: str) -> dict:
    """argparse type of options such as `--model-args`: a JSON object, or an error that shows what came."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"num_classes\": 10}}', got {text!r}")
    return value


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, help="local weights: .safetensors, or .pth/.bin with --allow-pickle")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow .pth/.bin checkpoints (read with torch.load(weights_only=True)); only for files you trust",
    )


def folder_weights(folder: Path) -> Path:
    """The weights file of a saved folder, safetensors first."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} holds no model.safetensors or pytorch_model.bin; pass --checkpoint.")


def read_checkpoint(path: str | Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from a local file, without the prefixes of training wrappers."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    elif path.suffix not in (".pth", ".pt", ".bin"):
        raise ValueError(f"Unknown checkpoint format {path.name!r}: expected .safetensors, or .pth/.pt/.bin.")
    elif not allow_pickle:
        raise ValueError(
            f"{path.name} is a pickle-based checkpoint; pass --allow-pickle (allow_pickle=True) to read it with "
            "torch.load(weights_only=True), or convert it to .safetensors."
        )
    else:
        state = unwrap_training_checkpoint(torch.load(path, map_location="cpu", weights_only=True))
    return {strip_wrapper_prefixes(key): value for key, value in state.items()}


def unwrap_training_checkpoint(state: dict) -> dict:
    """Training checkpoints keep the weights under "state_dict" (or "model"), next to the optimizer state and
    the arguments; a plain state dict comes back as it is."""
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            return state[key]
    return state


def strip_wrapper_prefixes(key: str) -> str:
    for prefix in WRAPPER_PREFIXES:
        key = key.removeprefix(prefix)
    return key
