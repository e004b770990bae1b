"""`hubformers export FORMAT ...`: a saved model in a format other runtimes load.

Each format is a plug-in module with its own arguments (`hubformers export onnx DIR OUT`); a new format adds a
module and an entry to `FORMATS`.
"""

import argparse

from hubformers.scripts.plugins import add_plugins

# format name on the command line -> its module in hubformers.scripts
FORMATS = {"onnx": "export_onnx"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plugins(parser, FORMATS, "FORMAT")


def main(args: argparse.Namespace) -> None:
    args.plugin.main(args)
