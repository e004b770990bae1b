"""The `hubformers` command, one sub-command per task.

Each sub-command lives in a module of `hubformers.scripts` exposing `add_arguments(parser)` and
`main(args)`; only the module of the command being run is imported, so `hubformers --help` stays fast.
"""

import argparse
import importlib
import re
import sys
from pathlib import Path

from . import __version__

COMMANDS = {
    "train": ("train", "Train a model with transformers' Trainer and leave a Hub-ready folder."),
    "convert": ("convert", "Convert a checkpoint from another library into a hubformers folder."),
    "export": ("export", "Export a saved model to ONNX, checked in onnxruntime against PyTorch."),
    "benchmark": ("benchmark", "Time hubformers against the reference implementations on the same weights."),
    "visualize-attention": ("visualize_attention", "Draw a ViT's or Swin's attention maps over an image."),
    "zero-shot": ("zero_shot", "Rank text labels for an image with a CLIP model."),
    "generate": ("generate", "Draw an image from a text prompt with a VAE guided by CLIP."),
    "evaluate-generation": ("evaluate_generation", "Score text-to-image with a classifier that took no part."),
}
# The options that name a model to load, a local folder or a Hub repo id ("name" or "namespace/name").
MODEL_OPTIONS = ("model", "clip", "vae", "classifier")
HUB_REPO_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser, with the arguments of the command named first in `argv` (the others list only their help)."""
    parser = argparse.ArgumentParser(
        prog="hubformers",
        description=f"The hubformers command: {', '.join(COMMANDS)}. `hubformers COMMAND --help` describes one.",
    )
    parser.add_argument("--version", action="version", version=f"hubformers {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if argv[:1] == [name]:
            module = importlib.import_module(f"hubformers.scripts.{module_name}")
            module.add_arguments(sub)
            sub.set_defaults(run=module.main)
    return parser


def model_option_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the first model option that names neither a saved model's folder nor a Hub repo id."""
    for name in MODEL_OPTIONS:
        value = getattr(args, name, None)
        if not isinstance(value, str):
            continue
        path = Path(value).expanduser()
        if path.is_dir() and not (path / "config.json").is_file():
            return f"--{name} {value}: the folder holds no config.json, so it is not a saved model"
        if not path.exists() and not HUB_REPO_ID.fullmatch(value):
            return f"--{name} {value}: no such folder, and not a Hub repo id"
    return None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    error = model_option_error(args)
    try:
        if error is None:
            args.run(args)
    except OSError as failure:  # a folder or repo the command was pointed at (missing, not a model, in the way)
        error = " ".join(str(failure).split())
    if error is not None:
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")


if __name__ == "__main__":
    main()
