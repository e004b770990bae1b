"""Sub-commands made of plug-in modules: `hubformers train|convert|benchmark NAME` dispatch to one module of
`hubformers.scripts` per NAME, so that a new architecture adds a module and one line to a registry dict.

A plug-in module has a docstring (its first line is the help), `add_arguments(parser)`, and what its
dispatcher calls (`main(args)` for train and convert, `workload(args)` for benchmark).
"""

import argparse
import importlib
from collections.abc import Callable


def add_plugins(
    parser: argparse.ArgumentParser,
    plugins: dict[str, str],
    metavar: str,
    add_common_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """One sub-command per plug-in (name -> module name); `args.plugin` is the chosen module. Common arguments
    come first, so that a plug-in can change their defaults with `parser.set_defaults`."""
    choices = parser.add_subparsers(dest="plugin_name", required=True, metavar=metavar)
    for name, module_name in plugins.items():
        module = importlib.import_module(f"hubformers.scripts.{module_name}")
        sub = choices.add_parser(
            name,
            help=module.__doc__.strip().splitlines()[0],
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if add_common_arguments:
            add_common_arguments(sub)
        module.add_arguments(sub)
        sub.set_defaults(plugin=module)
