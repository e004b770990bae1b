"""`hubformers convert SOURCE ...`: turn another library's checkpoint into a hubformers folder.

Each source is a plug-in module with its own arguments (`hubformers convert timm NAME_OR_FOLDER --output-dir
DIR`); a new source adds a module and an entry to `SOURCES`. The folder it writes loads with transformers'
Auto classes once `hubformers` is imported, and with `trust_remote_code=True` without it.
"""

import argparse

from hubformers.scripts.plugins import add_plugins

# source name on the command line -> its module in hubformers.scripts
SOURCES = {
    "timm": "convert_timm",
    "roberta-to-longformer": "convert_roberta",
    "open_clip": "convert_open_clip",
    "diffusers": "convert_diffusers",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plugins(parser, SOURCES, "SOURCE")


def main(args: argparse.Namespace) -> None:
    args.plugin.main(args)
