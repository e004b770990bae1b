"""`hubformers train ARCHITECTURE ...`: train a model with transformers' Trainer and leave a Hub-ready folder.

Each architecture is a plug-in module with its own arguments (`hubformers train vit --output-dir DIR`); a new
one adds a module and an entry to `TRAINERS`. Their shared pieces are in `hubformers.scripts.training`.
"""

import argparse

from hubformers.scripts.plugins import add_plugins

# architecture name on the command line -> its module in hubformers.scripts
TRAINERS = {
    "vit": "train_vit",
    "swin": "train_swin",
    "longformer": "train_longformer",
    "clip": "train_clip",
    "vae": "train_vae",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plugins(parser, TRAINERS, "ARCHITECTURE")


def main(args: argparse.Namespace) -> None:
    args.plugin.main(args)
