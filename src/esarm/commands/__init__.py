"""The sub-commands of ``esarm``: one module each, with ``register(subparsers)`` (its arguments) and ``run(args)``
(the work, returning the exit status). :mod:`esarm.cli` only builds the parser from :data:`COMMANDS` and
dispatches.

A module imports the library inside ``run``: ``esarm --help`` then needs neither torch nor transformers (together
about 6 s on a 2-core CPU). Bad input raises :class:`CommandError` (or the library's ``ValueError`` / ``OSError``),
which the dispatcher prints as one line ``esarm <command>: error: ...`` with exit status 2.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

__all__ = ["COMMANDS", "CommandError", "apply_threads", "find_config", "say"]

# modules of esarm.commands, in the order ``esarm --help`` lists their sub-commands
COMMANDS = ("animate", "demo", "pipeline", "evaluate", "synth", "prepare", "push", "app")

THREADS_HELP = "torch CPU threads (default: torch's, usually the number of cores)"


class CommandError(ValueError):
    """A user-facing error: printed without a traceback, exit status 2."""


def say(message: str = "") -> None:
    """One line of the command's output on stdout (the library logs instead)."""
    print(message, flush=True)


def apply_threads(threads: int | None) -> None:
    """``--threads``: the number of torch CPU threads, when given."""
    if threads is not None:
        import torch

        if threads < 1:
            raise CommandError(f"--threads must be a positive number of torch threads, got {threads}")
        torch.set_num_threads(threads)


def find_config(name: str) -> Path:
    """A pipeline config: a path, or a preset name looked up in ``configs/`` (working folder, then the presets
    installed with the package as ``esarm.configs``)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    candidates = []
    for folder in (Path.cwd() / "configs", Path(str(importlib.resources.files("esarm.configs")))):
        candidates += [folder / f"{name}.yaml", folder / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CommandError(f"config not found: {name!r} (looked for {name} and configs/{name}.yaml)")
