"""The mode a new file gets: ``0o666`` less the process's umask (``0o644`` under the usual umask ``022``).

Writers that go through a temporary file (``tempfile.mkstemp``, and safetensors 0.8's own atomic write of
``model.safetensors``) leave mode ``0o600``, which other users and containers sharing a model folder cannot read;
esarm gives those files the mode ``open()`` would have given them.
"""

from __future__ import annotations

import os
from pathlib import Path


def new_file_mode() -> int:
    """``0o666`` less the current umask (read by setting it and putting it back)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def give_new_file_mode(*paths: str | os.PathLike) -> None:
    """``chmod`` each of ``paths`` to :func:`new_file_mode`."""
    mode = new_file_mode()
    for path in paths:
        os.chmod(path, mode)


class NewFileModeMixin:
    """For esarm's ``PreTrainedModel`` classes: ``save_pretrained`` leaves the weights files at the mode of a new file
    (0666 less the umask), not the 0600 of the temporary file that safetensors 0.8 writes them through. Put it
    before ``PreTrainedModel`` among the bases."""

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        super().save_pretrained(save_directory, *args, **kwargs)
        give_new_file_mode(*Path(save_directory).glob("*.safetensors"))
