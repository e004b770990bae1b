"""Sub-commands made of plug-in modules: `hubformers train|convert|benchmark NAME` dispatch to one module of
`hubformers.scripts` per NAME, so that a new architecture adds a module and one line to a registry dict.

A plug-in module has a docstring (its first line is the help), `add_arguments(parser)`, and what its
dispatcher calls (`main(args)` for train and convert, `workload(args)` for benchmark).
"""

import argparse
import importlib
from types import ModuleType


def add_plugins(
    parser: argparse.ArgumentParser, plugins: dict[str, str], metavar: str
) -> list[tuple[argparse.ArgumentParser, ModuleType]]:
    """One sub-command per plug-in (name -> module name); `args.plugin` is the chosen module. The parsers and
    modules come back, for dispatchers that add common arguments."""
    choices = parser.add_subparsers(dest="plugin_name", required=True, metavar=metavar)
    added = []
    for name, module_name in plugins.items():
        module = importlib.import_module(f"hubformers.scripts.{module_name}")
        sub = choices.add_parser(
            name,
            help=module.__doc__.strip().splitlines()[0],
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(plugin=module)
        added.append((sub, module))
    return added
