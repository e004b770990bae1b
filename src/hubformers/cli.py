"""The `hubformers` command: train, convert, benchmark and visualize-attention.

Each sub-command lives in a module of `hubformers.scripts` exposing `add_arguments(parser)` and
`main(args)`; only the module of the command being run is imported, so `hubformers --help` stays fast.
"""

import argparse
import importlib
import sys

COMMANDS = {
    "train": ("train", "Train a model with transformers' Trainer and leave a Hub-ready folder."),
    "convert": ("convert", "Convert a checkpoint from another library into a hubformers folder."),
    "benchmark": ("benchmark", "Time hubformers against the reference implementations on the same weights."),
    "visualize-attention": ("visualize_attention", "Draw a ViT's or Swin's attention maps over an image."),
    "zero-shot": ("zero_shot", "Rank text labels for an image with a CLIP model."),
    "generate": ("generate", "Draw an image from a text prompt with a VAE guided by CLIP."),
    "evaluate-generation": ("evaluate_generation", "Score text-to-image with a classifier that took no part."),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser, with the arguments of the command named first in `argv` (the others list only their help)."""
    parser = argparse.ArgumentParser(prog="hubformers", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if argv[:1] == [name]:
            module = importlib.import_module(f"hubformers.scripts.{module_name}")
            module.add_arguments(sub)
            sub.set_defaults(run=module.main)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (FileExistsError, FileNotFoundError) as error:  # a folder the command was pointed at: no traceback
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")


if __name__ == "__main__":
    main()
