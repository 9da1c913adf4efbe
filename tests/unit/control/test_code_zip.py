"""Deployment packages: limits, corrupt archives, zip-slip, symlinks and permissions."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import warnings
import zipfile
from pathlib import Path

import pytest

from ember.control.code import (
    MAX_UNZIPPED,
    MAX_ZIPPED,
    UNZIP_FAILED,
    extract_zip,
    inspect_zip,
)
from ember.errors import InvalidParameterValueException, RequestEntityTooLargeException

Entry = tuple[str, bytes, int | None]  # name, content, unix mode (None: no unix bits)


def make_zip(entries: list[Entry], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``entries``; duplicates allowed. Mode None: an MS-DOS entry (no unix bits)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", compression) as archive:
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        for name, content, mode in entries:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = compression
            if mode is None:
                info.create_system = 0
                info.external_attr = 0x20  # MS-DOS "archive" attribute only
            else:
                info.create_system = 3
                info.external_attr = mode << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def patch_headers(data: bytes, local_offset: int, central_offset: int, value: int) -> bytes:
    """Overwrite a 2-byte field in the (single) local and central directory header."""
    patched = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        at = patched.index(signature) + offset
        patched[at : at + 2] = value.to_bytes(2, "little")
    return bytes(patched)


def file(name: str, content: bytes = b"x", mode: int | None = 0o644) -> Entry:
    return (name, content, None if mode is None else stat.S_IFREG | mode)


def link(name: str, target: str) -> Entry:
    return (name, target.encode(), stat.S_IFLNK | 0o777)


def directory(name: str, mode: int = 0o755) -> Entry:
    return (name, b"", stat.S_IFDIR | mode)


def unzip_error(data: bytes) -> str:
    with pytest.raises(InvalidParameterValueException) as caught:
        inspect_zip(data)
    return caught.value.message


# ---------------------------------------------------------------- inspect_zip


def test_summary_of_a_good_package() -> None:
    data = make_zip([file("app.py", b"print(1)\n"), directory("lib/"), file("lib/x.py", b"y" * 10)])
    summary = inspect_zip(data)
    digest = hashlib.sha256(data).digest()
    assert summary.size == len(data)
    assert summary.unzipped_size == 19
    assert summary.sha256_hex == digest.hex()
    assert summary.sha256_b64 == base64.b64encode(digest).decode()
    assert summary.names == frozenset({"app.py", "lib/x.py"})


def test_names_are_normalised() -> None:
    summary = inspect_zip(make_zip([file("./a/./b.py"), directory("./")]))
    assert summary.names == frozenset({"a/b.py"})


def test_empty_archive_is_readable() -> None:
    assert inspect_zip(make_zip([])).names == frozenset()


def test_zipped_size_limit() -> None:
    assert MAX_ZIPPED == 52428800
    with pytest.raises(RequestEntityTooLargeException) as caught:
        inspect_zip(b"\0" * (MAX_ZIPPED + 1))
    assert caught.value.message == "Zipped size must be smaller than 52428800 bytes"
    data = make_zip([file("a.py")])
    with pytest.raises(RequestEntityTooLargeException, match="smaller than 10 bytes"):
        inspect_zip(data, max_zipped=10)
    assert inspect_zip(data, max_zipped=len(data)).size == len(data)


def test_unzipped_size_limit() -> None:
    assert MAX_UNZIPPED == 262144000
    data = make_zip([file("a", b"a" * 60), file("b", b"b" * 41)])
    with pytest.raises(InvalidParameterValueException) as caught:
        inspect_zip(data, max_unzipped=100)
    assert caught.value.message == "Unzipped size must be smaller than 100 bytes"
    assert inspect_zip(data, max_unzipped=101).unzipped_size == 101


@pytest.mark.parametrize("data", [b"", b"not a zip at all", b"PK\x03\x04garbage"])
def test_not_a_zip(data: bytes) -> None:
    assert unzip_error(data) == UNZIP_FAILED
    assert UNZIP_FAILED == (
        "Could not unzip uploaded file. Please check your file, then try to upload again."
    )


def test_truncated_zip() -> None:
    data = make_zip([file("a.py", os.urandom(2000))])
    assert unzip_error(data[: len(data) // 2]) == UNZIP_FAILED


def test_crc_mismatch_is_detected() -> None:
    data = make_zip([file("a.py", b"hello world")], zipfile.ZIP_STORED)
    corrupt = data.replace(b"hello world", b"hello WORLD")
    assert unzip_error(corrupt) == UNZIP_FAILED
    assert inspect_zip(corrupt, verify_crc=False).names == frozenset({"a.py"})


def test_encrypted_entry_is_refused() -> None:
    data = patch_headers(make_zip([file("secret.py")], zipfile.ZIP_STORED), 6, 8, 0x1)
    assert "encrypted" in unzip_error(data)


def test_unsupported_compression_is_refused() -> None:
    data = patch_headers(make_zip([file("a.py")], zipfile.ZIP_STORED), 8, 10, 99)
    assert "unsupported compression" in unzip_error(data)


@pytest.mark.parametrize(
    "name", ["../evil.py", "/etc/cron.d/x", "a/../../evil", "a/../b", "..", "a/.."]
)
def test_zip_slip_names_are_refused(name: str) -> None:
    message = unzip_error(make_zip([file(name)]))
    assert message.startswith("Could not unzip uploaded file: ")
    assert "outside the package" in message


@pytest.mark.parametrize(
    "entries",
    [
        [file("a"), file("a/b")],
        [link("l", "real"), file("l/x")],
        [link("l", "."), directory("l/")],
        [directory("a/"), file("a")],
        [link("l", "x"), file("l")],
    ],
    ids=["below-file", "below-link", "dir-below-link", "dir-and-file", "link-and-file"],
)
def test_entries_below_files_or_links_are_refused(entries: list[Entry]) -> None:
    assert unzip_error(make_zip(entries)).startswith("Could not unzip uploaded file: ")


def test_relative_symlinks_inside_are_accepted() -> None:
    data = make_zip([file("lib/libx.so.1"), link("lib/libx.so", "libx.so.1"), link("cur", ".")])
    assert inspect_zip(data).names == frozenset({"lib/libx.so.1", "lib/libx.so", "cur"})


@pytest.mark.parametrize("target", ["/etc/passwd", "../x", "a/../../x", "", "..", "x\x00"])
def test_escaping_symlinks_are_refused(target: str) -> None:
    message = unzip_error(make_zip([link("l", target)]))
    assert message.startswith("Could not unzip uploaded file: the symbolic link 'l'")


def test_overlong_symlink_target_is_refused() -> None:
    assert "too long" in unzip_error(make_zip([link("l", "a/" * 3000)]))


# ---------------------------------------------------------------- extract_zip


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_extract_writes_files_with_their_permissions(tmp_path: Path) -> None:
    data = make_zip(
        [
            file("bootstrap", b"#!/bin/sh\necho hi\n", 0o755),
            file("private.txt", b"p", 0o600),
            file("setuid", b"s", 0o4755),
            file("windows.txt", b"w", None),
            file("deep/er/x.py", b"x"),
        ]
    )
    dest = tmp_path / "task"
    extract_zip(data, dest)
    assert (dest / "bootstrap").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert os.access(dest / "bootstrap", os.X_OK)
    assert mode_of(dest / "bootstrap") == 0o755
    assert mode_of(dest / "private.txt") == 0o600
    assert mode_of(dest / "setuid") == 0o755
    assert mode_of(dest / "windows.txt") == 0o644
    assert (dest / "deep/er/x.py").read_bytes() == b"x"
    assert mode_of(dest / "deep") == 0o755


def test_extract_directory_modes(tmp_path: Path) -> None:
    extract_zip(make_zip([directory("locked/", 0o500), file("locked/a", b"a")]), tmp_path)
    assert mode_of(tmp_path / "locked") == 0o700
    assert (tmp_path / "locked/a").read_bytes() == b"a"


def test_extract_last_duplicate_wins(tmp_path: Path) -> None:
    data = make_zip([file("a.py", b"first"), file("a.py", b"second")])
    extract_zip(data, tmp_path)
    assert (tmp_path / "a.py").read_bytes() == b"second"


def test_extract_creates_symlinks_inside(tmp_path: Path) -> None:
    data = make_zip(
        [link("lib/libx.so", "libx.so.1"), file("lib/libx.so.1", b"elf"), link("bin/run", "../x")]
    )
    extract_zip(data, tmp_path)
    assert (tmp_path / "lib/libx.so").is_symlink()
    assert (tmp_path / "lib/libx.so").readlink() == Path("libx.so.1")
    assert (tmp_path / "lib/libx.so").read_bytes() == b"elf"
    assert (tmp_path / "bin/run").readlink() == Path("../x")


def test_extract_refuses_link_chains_that_escape(tmp_path: Path) -> None:
    dest = tmp_path / "task"
    data = make_zip([link("s", "."), link("t", "s/..")])
    inspect_zip(data)  # each target alone stays inside
    with pytest.raises(InvalidParameterValueException, match="resolves outside the package"):
        extract_zip(data, dest)
    assert not (dest / "s").is_symlink()
    assert not (dest / "t").is_symlink()


@pytest.mark.parametrize(
    "entries",
    [
        [file("../escaped.txt")],
        [link("l", ".."), file("l/escaped.txt")],
        [link("l", "/tmp")],
    ],
)
def test_extract_never_writes_outside(tmp_path: Path, entries: list[Entry]) -> None:
    dest = tmp_path / "task"
    with pytest.raises(InvalidParameterValueException):
        extract_zip(make_zip(entries), dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task"]
    assert list(dest.iterdir()) == []


def test_extract_refuses_corrupt_content(tmp_path: Path) -> None:
    data = make_zip([file("a.py", b"hello world")], zipfile.ZIP_STORED)
    with pytest.raises(InvalidParameterValueException) as caught:
        extract_zip(data.replace(b"hello world", b"hello WORLD"), tmp_path)
    assert caught.value.message == UNZIP_FAILED


def test_extract_refuses_non_zip(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterValueException) as caught:
        extract_zip(b"nope", tmp_path)
    assert caught.value.message == UNZIP_FAILED
