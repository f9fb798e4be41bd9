"""The ``esarm`` command: animate speech, run the demo and the training pipeline, evaluate, build corpora, push
to the Hub, serve the app. Each sub-command is a module of :mod:`esarm.commands` (``register`` + ``run``); this
module builds the parser from them and dispatches.

Bad input (a missing file, an unknown emotion, a wrong extension...) prints one line ``esarm <command>: error:
...`` on stderr and exits with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from huggingface_hub.errors import StrictDataclassError

from esarm.commands import COMMANDS

# Names this module held before the sub-commands moved to esarm.commands and model loading to esarm.loading;
# kept for one release.
_MOVED = {
    "load_model_and_processor": "esarm.loading",
    "check_model_folder": "esarm.loading",
    "resolve_device": "esarm.loading",
    "MODEL_KINDS": "esarm.loading",
    "CommandError": "esarm.commands",
    "AUDIO_EXTENSIONS": "esarm.commands.animate",
    "OUTPUT_FORMATS": "esarm.commands.animate",
}


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"esarm.cli.{name} moved to {_MOVED[name]}.{name}; the old name goes in the next release",
        FutureWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(_MOVED[name]), name)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with its errors on one line, ``esarm animate: error: argument --intensity: invalid choice:
    7 (see esarm animate --help)``: argparse's own error prints the whole usage first (11 lines for animate), and the
    line that matters comes last. The sub-command parsers are of this class too (argparse makes them of the
    parent's class)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="esarm",
        description="Emotional speech to 52 ARKit blendshapes (ESARM): animate, train, evaluate, export, share.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress of the library (INFO)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"esarm.commands.{name}").register(subparsers)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("esarm")
    except Exception:  # noqa: BLE001
        return "unknown"


def _quiet_transformers() -> None:
    """transformers' own warnings and weight-loading bars are noise on a command line."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``esarm`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        _quiet_transformers()
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"esarm {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, ImportError, KeyError, StrictDataclassError) as error:
        if args.debug:
            raise
        message = str(error) if not isinstance(error, KeyError) else f"missing field {error}"
        message = " ".join(message.split())  # a config field's error spans two lines: one line on the terminal
        if isinstance(error, ImportError):
            message = f"{message} (this part of esarm is not installed or not available)"
        print(f"esarm {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
