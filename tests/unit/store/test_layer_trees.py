"""Merged /opt trees: layers in order, later files win, built once, files hard-linked."""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from pathlib import Path

from ember.control.code import extract_zip
from ember.store.blobs import BlobStore
from ember.store.layer_trees import OptTrees, merge_into


def _zip(files: dict[str, str], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100644 << 16
            archive.writestr(info, text)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, target)
    return buffer.getvalue()


async def _stored(blobs: BlobStore, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    await blobs.put_zip(sha, data)
    return sha


async def test_later_layers_overwrite_and_files_are_hard_links(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs", extract_zip)
    trees = OptTrees(tmp_path / "blobs" / "opt", blobs)
    first = await _stored(blobs, _zip({"a/value.txt": "first", "only-first": "1"}))
    second = await _stored(blobs, _zip({"a/value.txt": "second"}, links={"link": "only-first"}))
    merged = await trees.tree((first, second))
    assert merged is not None
    assert (merged / "a" / "value.txt").read_text() == "second"
    assert (merged / "only-first").read_text() == "1"
    assert (merged / "link").is_symlink()
    assert (merged / "link").read_text() == "1"
    source = await blobs.unpacked(second)
    assert (merged / "a" / "value.txt").stat().st_ino == (source / "a" / "value.txt").stat().st_ino
    reversed_tree = await trees.tree((second, first))
    assert reversed_tree is not None
    assert reversed_tree != merged
    assert (reversed_tree / "a" / "value.txt").read_text() == "first"


async def test_one_layer_is_its_unpacked_tree_and_none_is_none(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs", extract_zip)
    trees = OptTrees(tmp_path / "blobs" / "opt", blobs)
    sha = await _stored(blobs, _zip({"x": "1"}))
    assert await trees.tree((sha,)) == await blobs.unpacked(sha)
    assert await trees.tree(()) is None


async def test_built_once_for_concurrent_callers(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs", extract_zip)
    trees = OptTrees(tmp_path / "blobs" / "opt", blobs)
    shas = (await _stored(blobs, _zip({"x": "1"})), await _stored(blobs, _zip({"y": "2"})))
    results = await asyncio.gather(*(trees.tree(shas) for _ in range(5)))
    assert len(set(results)) == 1
    assert [p.name for p in (tmp_path / "blobs" / "opt").iterdir()] == [OptTrees.key(shas)]


def test_a_directory_replaces_a_file_and_the_other_way_round(tmp_path: Path) -> None:
    early, late, dest = tmp_path / "early", tmp_path / "late", tmp_path / "dest"
    (early / "thing").mkdir(parents=True)
    (early / "thing" / "inside").write_text("old")
    (early / "plain").write_text("file")
    (late / "plain").mkdir(parents=True)
    (late / "plain" / "now-a-dir").write_text("new")
    (late / "thing").write_text("now a file")
    dest.mkdir()
    merge_into(early, dest)
    merge_into(late, dest)
    assert (dest / "thing").read_text() == "now a file"
    assert (dest / "plain" / "now-a-dir").read_text() == "new"
