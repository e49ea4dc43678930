"""Atomic writes: complete or absent, and with the permissions a plain open() gives (0666 less the umask)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mqc_edge.atomic import new_temporary_beside, write_atomically, write_text_atomically


@pytest.fixture(params=[0o022, 0o027, 0o002, 0o077])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_get_0666_less_the_umask(tmp_path, umask) -> None:
    write_text_atomically(tmp_path / "a" / "report.json", "{}\n")
    write_atomically(tmp_path / "mask.png", Image.fromarray(np.zeros((4, 4), np.uint8)).save)
    write_atomically(tmp_path / "logits.npy", lambda tmp: np.save(tmp, np.zeros(3, np.float32)))
    write_atomically(tmp_path / "weights.safetensors", _recreate_private)
    for path in (tmp_path / "a" / "report.json", tmp_path / "mask.png", tmp_path / "logits.npy",
                 tmp_path / "weights.safetensors"):
        assert oct(_mode(path)) == oct(0o666 & ~umask), path.name
    assert _mode(tmp_path / "a") == 0o777 & ~umask


def _recreate_private(tmp: Path) -> None:
    """A writer that replaces the file it is given by a 0600 one (as safetensors' save_file does)."""
    tmp.unlink()
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600))


def test_the_temporary_file_is_hidden_beside_the_target_with_its_suffix(tmp_path, umask) -> None:
    tmp = new_temporary_beside(tmp_path / "sub" / "overlay.mp4")
    assert tmp.parent == tmp_path / "sub" and tmp.name.startswith(".overlay.") and tmp.suffix == ".mp4"
    assert tmp.stat().st_size == 0 and _mode(tmp) == 0o666 & ~umask


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path) -> None:
    (tmp_path / "keep.txt").write_text("old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(tmp_path / "keep.txt", fail)
    assert (tmp_path / "keep.txt").read_text() == "old" and sorted(os.listdir(tmp_path)) == ["keep.txt"]
