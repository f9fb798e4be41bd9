import os
import stat

import numpy as np
import pytest

from esarm.utils import atomic_write, atomic_write_bytes, atomic_write_text


def test_atomic_write_creates_folder_and_readable_file(tmp_path):
    path = atomic_write_text(tmp_path / "new" / "card.md", "héllo\n")
    assert path == tmp_path / "new" / "card.md"
    assert path.read_text(encoding="utf-8") == "héllo\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # not mkstemp's 0600
    assert atomic_write_bytes(path, b"\x00\x01").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in path.parent.iterdir()) == ["card.md"]  # no temporary file left


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    path = atomic_write_text(tmp_path / "results.json", "old")

    def failing(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, failing)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_atomic_write_temporary_suffix_lets_numpy_pick_the_name(tmp_path):
    # np.savez appends ".npz" to a name without it; the temporary file must end in the suffix asked for.
    path = atomic_write(tmp_path / "clip.cache", lambda tmp: np.savez(tmp, x=np.arange(3)), suffix=".npz")
    with np.load(path) as data:
        np.testing.assert_array_equal(data["x"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["clip.cache"]
