"""Atomic file writes: a reader (or a crash) never sees a half-written output file.

Files get the permissions a plain `open()` would give them (0666 less the process umask, or
what the folder's default ACL says): the temporary file is created that way, not by
`tempfile.mkstemp`, whose 0600 would make every output private to its writer.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable


def new_temporary_beside(path: Path) -> Path:
    """Create an empty hidden file `.<stem>.<random><suffix>` in `path`'s folder and return its path.

    It keeps `path`'s suffix so that writers choosing the format by extension (Pillow, OpenCV,
    numpy) still do the right thing; its mode is 0666 less the umask, as for `open(path, "w")`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.parent / f".{path.stem}.{secrets.token_hex(8)}{path.suffix}"
    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return tmp_path


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path` (`new_temporary_beside`), then
    rename it into place."""
    path = Path(path)
    tmp_path = new_temporary_beside(path)
    mode = os.stat(tmp_path).st_mode & 0o7777
    try:
        write(tmp_path)
        os.chmod(tmp_path, mode)  # some writers (safetensors) recreate the file 0600
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str) -> None:
    """Write a text file atomically (UTF-8)."""
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
