"""Content-addressed blobs on disk: code zips by sha256, and their unpacked trees.

Layout under the root::

    zips/<sha256>.zip      the uploaded archive, written once (temp file + rename)
    trees/<sha256>/        its extracted tree, extracted once (temp dir + rename)

Invariants: a path that exists is complete (never a partial write); a hash is extracted
at most once per process at a time (concurrent callers await the same extraction). All
file work runs on worker threads.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

Extractor = Callable[[bytes, Path], None]


class BlobStore:
    """Scope: one per server process."""

    def __init__(self, root: Path, extract: Extractor) -> None:
        self._zips = root / "zips"
        self._trees = root / "trees"
        self._extract = extract
        self._extracting: dict[str, asyncio.Task[Path]] = {}  # sha256 => running extraction
        self._zips.mkdir(parents=True, exist_ok=True)
        self._trees.mkdir(parents=True, exist_ok=True)

    def zip_path(self, sha256_hex: str) -> Path:
        return self._zips / f"{sha256_hex}.zip"

    async def put_zip(self, sha256_hex: str, data: bytes) -> None:
        """Store a zip under its hash (a no-op if it is already there)."""
        await asyncio.to_thread(self._write_once, self.zip_path(sha256_hex), data)

    async def read_zip(self, sha256_hex: str) -> bytes:
        return await asyncio.to_thread(self.zip_path(sha256_hex).read_bytes)

    async def unpacked(self, sha256_hex: str) -> Path:
        """The extracted tree of a stored zip, extracting it on first use."""
        tree = self._trees / sha256_hex
        if tree.is_dir():
            return tree
        task = self._extracting.get(sha256_hex)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(self._extract_once, sha256_hex))
            self._extracting[sha256_hex] = task
            task.add_done_callback(lambda _: self._extracting.pop(sha256_hex, None))
        return await asyncio.shield(task)

    def _extract_once(self, sha256_hex: str) -> Path:
        tree = self._trees / sha256_hex
        if tree.is_dir():
            return tree
        data = self.zip_path(sha256_hex).read_bytes()
        staging = Path(tempfile.mkdtemp(prefix=f".{sha256_hex}.", dir=self._trees))
        try:
            self._extract(data, staging)
            staging.chmod(0o755)
            staging.rename(tree)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return tree

    @staticmethod
    def _write_once(path: Path, data: bytes) -> None:
        if path.exists():
            return
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            Path(temp).replace(path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
