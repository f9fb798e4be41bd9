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


def test_staged_folder_has_normal_permissions_and_replaces_the_old_one(tmp_path):
    from esarm.utils import staged_folder

    target = tmp_path / "corpus"
    for text in ("old", "new"):
        with staged_folder(target) as staging:
            assert staging.parent == tmp_path and staging.name.startswith(".corpus.staging-")
            (staging / "data.txt").write_text(text)
    assert (target / "data.txt").read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o777 & ~umask  # not mkdtemp's 0700
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]
    with pytest.raises(RuntimeError), staged_folder(target) as staging:
        (staging / "data.txt").write_text("half")
        raise RuntimeError("killed")
    assert (target / "data.txt").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["corpus"]


def test_what_a_killed_writer_left_is_removed_by_the_next_one(tmp_path):
    import subprocess
    import sys

    from esarm.utils import remove_stale_temporaries, staged_folder

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".corpus.staging-{pid}-0a1b2c3d"
    (stale / "train").mkdir(parents=True)
    live = tmp_path / f".corpus.staging-{os.getpid()}-ffffffff"  # another writer, still running
    live.mkdir()
    with staged_folder(tmp_path / "corpus") as staging:
        (staging / "x").write_text("x")
    assert not stale.exists() and live.exists()
    leftover = tmp_path / f".clip.npz.tmp-{pid}-abc.npz"
    leftover.write_bytes(b"half")
    mine = tmp_path / f".clip.npz.tmp-{os.getpid()}-abc.npz"
    mine.write_bytes(b"in progress")
    assert remove_stale_temporaries(tmp_path) == [leftover]
    assert mine.exists()


def test_atomic_write_names_the_users_path(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OSError, match="a_file"):
        atomic_write_text(tmp_path / "a_file" / "out.csv", "x")
    from esarm.utils import check_writable_folder

    with pytest.raises(OSError, match=r"--out must be a folder esarm can write in, got '.*a_file/sub'"):
        check_writable_folder(tmp_path / "a_file" / "sub", argument="--out")
    assert check_writable_folder(tmp_path / "new" / "sub") == tmp_path / "new" / "sub"


def test_check_safetensors_finds_truncated_and_corrupted_files(tmp_path):
    import torch
    from safetensors.torch import save_file

    from esarm.utils import check_safetensors

    path = tmp_path / "model.safetensors"
    save_file({"w": torch.arange(1000, dtype=torch.float32)}, str(path))
    data = path.read_bytes()
    assert check_safetensors(path) == path
    path.write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        check_safetensors(path)
    path.write_bytes(b"\xff" * 16 + data[16:])
    with pytest.raises(ValueError, match="must be a safetensors file"):
        check_safetensors(path)
