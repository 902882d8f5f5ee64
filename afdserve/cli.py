"""The ``afdserve`` command. Each module registers its own subcommands, so this file only
lists which modules have them."""

import argparse
import importlib
import sys

# Modules that define ``add_commands(subparsers)``; imported lazily so ``afdserve --help`` stays
# fast and a missing optional dependency only breaks the subcommand that needs it.
COMMAND_MODULES = ["afdserve.packaging.archive", "afdserve.ops.server", "afdserve.evaluation.accuracy", "afdserve.experiments.bench", "afdserve.train.afd",
                   "afdserve.train.restorer", "afdserve.evaluation.restorer_report", "afdserve.ops.management", "afdserve.experiments.ab",
                   "afdserve.experiments.loadtest"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="afdserve", description="Package and serve classifiers for JPEG-compressed images."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
