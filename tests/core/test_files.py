"""Atomic writes: fsynced before the rename, the folder after; a full disk is one line naming the
file, the temporary file removed and the last good file kept (ENOSPC injected into os.write)."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from rksearch.core import files
from rksearch.core.errors import RKSearchError
from rksearch.core.files import write_atomic, write_text


def disk_fills_after(monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    """os.write writes ``budget`` more bytes, then fails as a full disk does."""
    real, left = os.write, [budget]

    def write(fd: int, data) -> int:
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real(fd, bytes(memoryview(data)[:left[0]]))
        left[0] -= n
        return n

    monkeypatch.setattr(os, "write", write)


def test_content_is_whole_fsynced_and_no_temporary_file_remains(tmp_path: Path, monkeypatch) -> None:
    synced, real_fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    path = tmp_path / "a.txt"
    write_text(path, "old\n")
    write_text(path, "x" * 100_000)
    assert path.read_text() == "x" * 100_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    assert synced == ["a.txt.tmp", tmp_path.name] * 2  # the file before its rename, the folder after


def test_torch_save_through_write_atomic_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    state = {"w": torch.arange(10_000.0), "epoch": 3}
    write_atomic(path, lambda f: torch.save(state, f))
    back = torch.load(path, weights_only=True)
    assert back["epoch"] == 3 and torch.equal(back["w"], state["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


@pytest.mark.parametrize("writer", ["text", "torch"])
def test_full_disk_is_one_line_keeps_the_old_file_and_removes_the_temporary_one(tmp_path, monkeypatch, writer) -> None:
    path = tmp_path / "out.bin"
    write_text(path, "last good\n")
    disk_fills_after(monkeypatch, 1000)
    with pytest.raises(RKSearchError) as e:
        if writer == "text":
            write_text(path, "y" * 5000)
        else:
            write_atomic(path, lambda f: torch.save({"w": torch.zeros(5000)}, f))
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "no space left" in msg
    assert "last complete one is kept" in msg
    assert "needs more than" in msg and ("5.0 KB" in msg if writer == "text" else "KB" in msg)
    monkeypatch.undo()
    assert path.read_text() == "last good\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_full_disk_at_fsync_and_a_new_file_write_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EDQUOT, "Disk quota exceeded")))
    path = tmp_path / "new.txt"
    with pytest.raises(RKSearchError, match="nothing was written"):
        write_text(path, "z")
    assert list(tmp_path.iterdir()) == []


def test_other_errors_keep_their_type(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError) as e:
        write_atomic(tmp_path / "a.pt", lambda f: torch.save({"w": torch.zeros(3)}, f))  # torch hides the errno
    assert e.value.errno == errno.EIO
    assert list(tmp_path.iterdir()) == []


def test_folder_sync_is_skipped_where_it_cannot_be_done(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EINVAL, "Invalid argument"))
                        if os.path.isdir(f"/proc/self/fd/{fd}") else None)
    files.sync_folder(tmp_path)
    files.sync_folder(tmp_path / "missing")
