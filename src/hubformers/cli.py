"""The `hubformers` command: train, convert, benchmark and visualize-attention.

Each sub-command lives in a module of `hubformers.scripts` exposing `add_arguments(parser)` and
`main(args)`; they are imported only when their command runs, so `hubformers --help` stays fast.
"""

import argparse
import importlib

COMMANDS = {
    "train": ("train", "Train a model with transformers' Trainer and leave a Hub-ready folder."),
    "convert": ("convert", "Convert a checkpoint from another library into a hubformers folder."),
    "benchmark": ("benchmark", "Time hubformers against the reference implementations on the same weights."),
    "visualize-attention": ("visualize_attention", "Draw a ViT's attention maps over an image."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubformers", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"hubformers.scripts.{module_name}")
        sub = commands.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(run=module.main)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
