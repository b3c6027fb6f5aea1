"""Reading the members of an image folder or a zip, safely: no zip bombs, no links out of the folder."""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

from rksearch.core.errors import RKSearchError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MAX_MEMBER_BYTES = 256 * 2**20
"""Uncompressed bytes of one zip member."""
MAX_RATIO = 100
"""Uncompressed to compressed size of a zip member above 1 MiB (images barely compress; a zip bomb
expands 1000-fold), so a zip never expands to more than about MAX_RATIO times its own size."""


class ImageStore:
    """Reads members of a folder or a zip; a zip is reopened in each process (DataLoader workers)."""

    def __init__(self, path: Path):
        self.path = path
        self.is_zip = path.is_file()
        self._zip: tuple[int, zipfile.ZipFile] | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None}

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip[0] != os.getpid():
            try:
                self._zip = (os.getpid(), zipfile.ZipFile(self.path))
            except (zipfile.BadZipFile, OSError) as e:
                raise RKSearchError(f"not a readable zip file ({e})", source=self.path, field="root") from None
        return self._zip[1]

    def where(self, member: str) -> str:
        return f"{self.path}:{member}" if self.is_zip else str(self.path / member)

    def members(self) -> list[str]:
        """Every image file, as a '/'-separated path relative to the store; refuses a zip member
        that expands too much and a symbolic link that leaves the folder."""
        if self.is_zip:
            infos = [i for i in self._archive().infolist() if not i.is_dir()]
            for i in infos:
                self._check_expansion(i)
            names = [i.filename for i in infos]
        else:
            names = []
            inside = os.path.realpath(self.path)
            for d, dirs, files in os.walk(self.path):  # symbolic links to folders are listed, not followed
                for f in dirs + files:
                    path = os.path.join(d, f)
                    target = os.path.realpath(path)
                    if os.path.islink(path) and os.path.commonpath([inside, target]) != inside:
                        raise RKSearchError(f"a symbolic link to {target}, outside the data folder {self.path}",
                                            source=path)
                names += [os.path.relpath(os.path.join(d, f), self.path).replace(os.sep, "/") for f in files]
        return sorted(n for n in names if n.lower().endswith(IMAGE_EXTENSIONS))

    def _check_expansion(self, info: zipfile.ZipInfo) -> None:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > MAX_MEMBER_BYTES or (info.file_size > 2**20 and ratio > MAX_RATIO):
            raise RKSearchError(f"expands to {info.file_size:,} bytes ({ratio:,.0f} times its compressed size); "
                                f"at most {MAX_MEMBER_BYTES:,} bytes and {MAX_RATIO} times are read (a zip bomb?)",
                                source=self.where(info.filename))

    def read(self, member: str) -> bytes:
        try:
            if self.is_zip:
                archive = self._archive()
                self._check_expansion(archive.getinfo(member))
                return archive.read(member)
            return (self.path / member).read_bytes()
        except (OSError, zipfile.BadZipFile) as e:
            raise RKSearchError(f"cannot read: {e}", source=self.where(member)) from None

    def signature(self, members: list[str]) -> list:
        """What the cache key hashes. A zip: its size, mtime and a digest of its central directory
        (every member's name, size and CRC-32 of its content), so rewriting it in place with
        other images is seen even where the mtime stays (coarse timestamps, ``rsync -a``,
        ``touch -r``). A folder: every file's name, size, mtime and ctime (which the kernel sets
        on every rewrite and nothing can set back; a rewrite within the timestamp resolution of
        a coarse file system, in the moment the cache is built, can go unseen)."""
        if self.is_zip:
            st = self.path.stat()
            index = hashlib.sha256()
            for i in sorted(self._archive().infolist(), key=lambda i: i.filename):
                index.update(f"{i.filename}\0{i.file_size}\0{i.CRC}\n".encode())
            return [str(self.path.resolve()), st.st_size, st.st_mtime_ns, index.hexdigest()]
        stats = [(self.path / m).stat() for m in members]
        return [str(self.path.resolve()),
                [(m, s.st_size, s.st_mtime_ns, s.st_ctime_ns) for m, s in zip(members, stats)]]
