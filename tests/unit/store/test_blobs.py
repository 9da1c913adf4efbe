"""The blob store: write once, extract once, even when asked concurrently."""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from pathlib import Path

from ember.store.blobs import BlobStore


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "x = 1\n")
    return buffer.getvalue()


async def test_unpacked_once_for_concurrent_callers(tmp_path: Path) -> None:
    calls: list[Path] = []

    def extract(data: bytes, dest: Path) -> None:
        calls.append(dest)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(dest)

    data = _zip()
    sha = hashlib.sha256(data).hexdigest()
    blobs = BlobStore(tmp_path, extract)
    await blobs.put_zip(sha, data)
    await blobs.put_zip(sha, data)
    trees = await asyncio.gather(*(blobs.unpacked(sha) for _ in range(5)))
    assert len(set(trees)) == 1
    assert (trees[0] / "app.py").read_text() == "x = 1\n"
    assert len(calls) == 1
    assert await blobs.read_zip(sha) == data
    assert [p.name for p in (tmp_path / "trees").iterdir()] == [sha]  # no staging left
