"""The ``/opt`` tree of a function: its layers' unpacked trees merged in order, built once.

Each layer zip is unpacked once by the blob store (``trees/<sha256>/``). A function's
``/opt`` is the merge of its layers' trees in the order the function lists them, later
layers overwriting earlier files (as Lambda extracts them in order). One layer needs no
merge: its unpacked tree is used as it is. Several are merged into
``opt/<key>/`` where ``key`` is the sha256 of the ordered list of layer hashes, so every
function (and every environment) with the same ordered list shares one tree.

The merge is a tree of hard links to the unpacked files (no file content is copied;
symbolic links are recreated with the same target), written into a staging directory
and renamed into place: a path that exists is complete. Trees are immutable once built
(sandboxes mount them read-only), so a shared inode is never written through.

Invariants: one build per key at a time per process (concurrent callers await the same
build); all file work runs on worker threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from ember.store.blobs import BlobStore


class OptTrees:
    """Scope: one per server process."""

    def __init__(self, root: Path, blobs: BlobStore) -> None:
        self._root = root
        self._blobs = blobs
        self._building: dict[str, asyncio.Task[Path]] = {}  # key => running merge
        self._root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(layer_shas: tuple[str, ...]) -> str:
        return hashlib.sha256("\n".join(layer_shas).encode()).hexdigest()

    async def tree(self, layer_shas: tuple[str, ...]) -> Path | None:
        """The merged tree of these layer zips (in order); None without layers."""
        if not layer_shas:
            return None
        sources = [await self._blobs.unpacked(sha) for sha in layer_shas]
        if len(sources) == 1:
            return sources[0]
        key = self.key(layer_shas)
        merged = self._root / key
        if merged.is_dir():
            return merged
        task = self._building.get(key)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(self._build_once, merged, sources))
            self._building[key] = task
            task.add_done_callback(lambda _: self._building.pop(key, None))
        return await asyncio.shield(task)

    def _build_once(self, merged: Path, sources: list[Path]) -> Path:
        if merged.is_dir():
            return merged
        staging = Path(tempfile.mkdtemp(prefix=f".{merged.name}.", dir=self._root))
        try:
            for source in sources:
                merge_into(source, staging)
            staging.chmod(0o755)
            staging.rename(merged)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return merged


def merge_into(source: Path, dest: Path) -> None:
    """Overlay ``source`` onto ``dest``: files and links replace what is there.

    A directory in ``source`` replaces a file or link of the same path in ``dest`` (and
    the other way round), as extracting a later archive over an earlier one would.
    Entry types come from ``scandir`` (no extra ``stat`` per file).
    """
    with os.scandir(source) as entries:
        for entry in entries:
            target = dest / entry.name
            if entry.is_symlink():
                _remove(target)
                target.symlink_to(os.readlink(entry.path))  # noqa: PTH115 - a DirEntry path
            elif entry.is_dir():
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    target.unlink()
                target.mkdir(mode=0o755, exist_ok=True)
                merge_into(Path(entry.path), target)
                target.chmod(entry.stat().st_mode & 0o777)
            else:
                try:
                    os.link(entry.path, target)
                except FileExistsError:
                    _remove(target)
                    os.link(entry.path, target)


def _remove(target: Path) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)
