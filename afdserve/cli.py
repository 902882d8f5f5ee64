"""The ``afdserve`` command.

``COMMANDS`` lists every subcommand with the module that defines it and its one-line help.
``afdserve --help`` is answered from that table alone; a subcommand's module (and what it loads:
torch, timm, psutil) is imported only when that subcommand runs or prints its own help, so a
missing optional dependency breaks only the commands that need it. Each module registers its
commands with ``add_commands(subparsers)``.
"""

import argparse
import importlib
import sys

COMMANDS = {
    "build": ("afdserve.packaging.archive", "build the model archives (.mar) with their manifests"),
    "serve": ("afdserve.ops.server", "start TorchServe in the background and wait until the models are READY"),
    "stop": ("afdserve.ops.server", "stop the TorchServe started by `afdserve serve`"),
    "models": ("afdserve.ops.management", "list served models and versions"),
    "promote": ("afdserve.ops.management", "make a version the default"),
    "retire": ("afdserve.ops.management", "take a (non-default) version out of service"),
    "evaluate": ("afdserve.evaluation.accuracy", "accuracy of archives or trained AFD runs on labelled images"),
    "evaluate-restorer": ("afdserve.evaluation.restorer_report",
                          "PSNR/SSIM/PSNR-B of a SwinIR restorer, and restore-then-classify accuracy"),
    "train": ("afdserve.train.afd", "train an AFD module (frozen backbone as its own teacher)"),
    "train-restorer": ("afdserve.train.restorer", "train a compact SwinIR JPEG artefact restorer"),
    "ab": ("afdserve.experiments.ab", "compare two served model versions on an image folder"),
    "bench": ("afdserve.experiments.bench", "where the serving time goes: in-process by stage and through TorchServe"),
    "loadtest": ("afdserve.experiments.loadtest", "concurrent clients against a served model for a bounded time"),
    "demo": ("afdserve.demo.app", "a web page that compresses a photo and shows both classifiers' top-5 (Gradio)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with ``command``'s module imported and its commands complete; every other
    command is listed by name and help only."""
    parser = argparse.ArgumentParser(
        prog="afdserve", description="Package and serve classifiers for JPEG-compressed images."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    module = COMMANDS[command][0] if command in COMMANDS else None
    if module is not None:
        importlib.import_module(module).add_commands(sub)
    for name, (defined_in, help_text) in COMMANDS.items():
        if defined_in != module:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
