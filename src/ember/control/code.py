"""Deployment packages (.zip files): inspect them without extracting, extract them safely.

``inspect_zip`` is pure (no I/O): it enforces Lambda's size limits, checks that the
archive can be read end to end (CRCs included) and that no entry can land outside the
extraction root. ``extract_zip`` does the I/O; the blob store runs it on a worker thread
into a fresh staging directory and discards that directory on any error.

Entry rules (checked by both):

* names are relative: no leading ``/``, no ``..`` component, no NUL; ``.`` and empty
  components are dropped;
* no entry may sit below a file or symlink entry (``a`` a file or link and ``a/b``);
* symlinks (unix mode ``S_IFLNK`` in ``external_attr``) must have a relative target that
  stays inside the tree; after extraction every link is also resolved for real and must
  still land inside it (chains of links included);
* encrypted entries and unsupported compression methods make the archive unreadable.

Permissions: a file keeps its unix permission bits (``0o777`` part; setuid, setgid and
sticky are dropped), so an executable ``bootstrap`` stays executable; without unix bits
(archives made on Windows) a file gets ``0o644``. Directories get their bits plus owner
``rwx`` (``0o755`` when they carry none), so the tree can always be cleaned up.
"""

from __future__ import annotations

import base64
import hashlib
import io
import lzma
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ember.errors import InvalidParameterValueException, RequestEntityTooLargeException

MAX_ZIPPED = 52428800
MAX_UNZIPPED = 262144000
UNZIP_FAILED = "Could not unzip uploaded file. Please check your file, then try to upload again."

_SUPPORTED_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_CHUNK = 1 << 20
_MAX_LINK_TARGET = 4096
# What zipfile and its decompressors raise on corrupt input.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    KeyError,
    IndexError,
    OverflowError,
    struct.error,
    zlib.error,
    lzma.LZMAError,
)

Kind = Literal["file", "dir", "link"]


@dataclass(frozen=True, slots=True)
class ZipSummary:
    """What the registry records about an accepted package."""

    size: int  # bytes of the zip (CodeSize)
    unzipped_size: int  # sum of the entries' uncompressed sizes
    sha256_hex: str  # blob key
    sha256_b64: str  # CodeSha256 on the wire
    names: frozenset[str]  # files and symlinks, as normalised relative paths


@dataclass(frozen=True, slots=True)
class _Entry:
    info: zipfile.ZipInfo
    path: tuple[str, ...]  # normalised components, never empty
    kind: Kind
    mode: int  # permission bits to apply


def _unzip_failed(detail: str | None = None) -> InvalidParameterValueException:
    if detail is None:
        return InvalidParameterValueException(UNZIP_FAILED)
    return InvalidParameterValueException(
        f"Could not unzip uploaded file: {detail}. Please check your file, then try to upload "
        "again."
    )


# ---------------------------------------------------------------- reading the archive


def _open(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except _READ_ERRORS:
        raise _unzip_failed() from None


def _safe_path(name: str) -> tuple[str, ...]:
    """The normalised components of an entry name; escaping names are refused."""
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if name.startswith("/") or ".." in parts or "\x00" in name:
        raise _unzip_failed(f"the entry '{name}' points outside the package (absolute or '..')")
    return parts


def _classify(info: zipfile.ZipInfo) -> tuple[Kind, int]:
    """Entry kind and the permission bits to apply, from the unix mode if present."""
    unix = info.external_attr >> 16
    perms = stat.S_IMODE(unix) & 0o777
    if info.is_dir() or stat.S_ISDIR(unix):
        return "dir", (perms | 0o700) if perms else 0o755
    if stat.S_ISLNK(unix):
        return "link", 0o777
    return "file", perms if perms else 0o644


def _entry(info: zipfile.ZipInfo) -> _Entry | None:
    """One checked entry; None for the root directory itself (``./``)."""
    path = _safe_path(info.filename)
    if info.flag_bits & 0x1:
        raise _unzip_failed(f"the entry '{info.filename}' is encrypted")
    if info.compress_type not in _SUPPORTED_METHODS:
        raise _unzip_failed(f"the entry '{info.filename}' uses an unsupported compression")
    kind, mode = _classify(info)
    if not path:
        if kind == "dir":
            return None
        raise _unzip_failed(f"the entry '{info.filename}' has no name")
    return _Entry(info, path, kind, mode)


def _check_nesting(entries: Sequence[_Entry]) -> None:
    """No entry below a file or link; a link or directory path is not reused by another kind.

    (A file listed twice is allowed: the last copy wins, as with ``unzip``.)
    """
    dirs = {entry.path for entry in entries if entry.kind == "dir"}
    leaves: dict[tuple[str, ...], Kind] = {}
    for entry in entries:
        if entry.kind == "dir":
            continue
        previous = leaves.get(entry.path)
        if entry.path in dirs or (previous is not None and "link" in (previous, entry.kind)):
            raise _unzip_failed(f"the entry '{entry.info.filename}' appears twice")
        leaves[entry.path] = entry.kind
    for entry in entries:
        for depth in range(1, len(entry.path)):
            if entry.path[:depth] in leaves:
                raise _unzip_failed(
                    f"the entry '{entry.info.filename}' lies below a file or symbolic link"
                )


def _entries(archive: zipfile.ZipFile) -> list[_Entry]:
    entries = [e for e in map(_entry, archive.infolist()) if e is not None]
    _check_nesting(entries)
    return entries


def _link_target(archive: zipfile.ZipFile, entry: _Entry) -> str:
    """The target of a symlink entry; it must be relative and stay inside the tree."""
    if entry.info.file_size > _MAX_LINK_TARGET:
        raise _unzip_failed(f"the symbolic link '{entry.info.filename}' is too long")
    try:
        target = archive.read(entry.info).decode("utf-8")
    except (*_READ_ERRORS, UnicodeDecodeError):
        raise _unzip_failed() from None
    depth = len(entry.path) - 1  # components of the link's own directory
    for part in target.split("/"):
        if part == "..":
            depth -= 1
        elif part not in ("", "."):
            depth += 1
        if depth < 0:
            break
    if not target or target.startswith("/") or "\x00" in target or depth < 0:
        raise _unzip_failed(
            f"the symbolic link '{entry.info.filename}' points outside the package ('{target}')"
        )
    return target


def _read_all(archive: zipfile.ZipFile, entry: _Entry) -> None:
    """Decompress one entry fully: zipfile checks its CRC at the end."""
    try:
        with archive.open(entry.info) as source:
            while source.read(_CHUNK):
                pass
    except _READ_ERRORS:
        raise _unzip_failed() from None


# ---------------------------------------------------------------- inspection


def inspect_zip(
    data: bytes,
    max_zipped: int = MAX_ZIPPED,
    max_unzipped: int = MAX_UNZIPPED,
    *,
    verify_crc: bool = True,
) -> ZipSummary:
    """Check a package against Lambda's limits and the entry rules; nothing is written.

    ``verify_crc`` decompresses every entry (bounded by ``max_unzipped``) so that a
    corrupt archive is refused at upload rather than at first invoke.
    """
    if len(data) > max_zipped:
        raise RequestEntityTooLargeException(f"Zipped size must be smaller than {max_zipped} bytes")
    with _open(data) as archive:
        entries = _entries(archive)
        unzipped = sum(entry.info.file_size for entry in entries)
        if unzipped > max_unzipped:
            raise InvalidParameterValueException(
                f"Unzipped size must be smaller than {max_unzipped} bytes"
            )
        for entry in entries:
            if entry.kind == "link":
                _link_target(archive, entry)
            elif entry.kind == "file" and verify_crc:
                _read_all(archive, entry)
    digest = hashlib.sha256(data).digest()
    return ZipSummary(
        size=len(data),
        unzipped_size=unzipped,
        sha256_hex=digest.hex(),
        sha256_b64=base64.b64encode(digest).decode("ascii"),
        names=frozenset("/".join(e.path) for e in entries if e.kind != "dir"),
    )


# ---------------------------------------------------------------- extraction


def _make_dirs(root: Path, parts: tuple[str, ...], created: dict[Path, int]) -> Path:
    """Create ``root/parts`` one real directory at a time (never through a link)."""
    current = root
    for part in parts:
        current = current / part
        try:
            current.mkdir(mode=0o700)
            created.setdefault(current, 0o755)
        except FileExistsError:
            pass
        if not stat.S_ISDIR(current.lstat().st_mode):
            raise _unzip_failed(f"'{current.relative_to(root)}' is not a directory")
    return current


def _write_file(
    archive: zipfile.ZipFile, root: Path, entry: _Entry, created: dict[Path, int]
) -> None:
    target = _make_dirs(root, entry.path[:-1], created) / entry.path[-1]
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(target, flags, 0o600), "wb") as sink:
        try:
            source = archive.open(entry.info)
        except _READ_ERRORS:
            raise _unzip_failed() from None
        with source:
            while True:
                try:
                    chunk = source.read(_CHUNK)
                except _READ_ERRORS:
                    raise _unzip_failed() from None
                if not chunk:
                    break
                sink.write(chunk)
        os.fchmod(sink.fileno(), entry.mode)


def _check_links_inside(root: Path, links: list[Path]) -> None:
    """Every link, resolved for real through any chain, stays inside ``root``."""
    prefix = str(root) + os.sep
    for link in links:
        real = os.path.realpath(link)
        if real != str(root) and not real.startswith(prefix):
            for made in links:
                made.unlink(missing_ok=True)
            raise _unzip_failed(
                f"the symbolic link '{link.relative_to(root)}' resolves outside the package"
            )


def extract_zip(data: bytes, dest: Path) -> None:
    """Extract a package into ``dest`` (created if missing; expected empty).

    Enforces the entry rules of the module docstring; permission bits as described
    there. Symlinks are created last, after every file and directory, so no write ever
    goes through one. On error ``dest`` may hold a partial tree: extract into a fresh
    directory and discard it on failure.
    """
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    created: dict[Path, int] = {}  # directory => mode to apply once everything is written
    with _open(data) as archive:
        entries = _entries(archive)
        targets = {id(e): _link_target(archive, e) for e in entries if e.kind == "link"}
        for entry in entries:
            if entry.kind == "dir":
                created[_make_dirs(root, entry.path, created)] = entry.mode
            elif entry.kind == "file":
                _write_file(archive, root, entry, created)
        links: list[Path] = []
        for entry in entries:
            if entry.kind == "link":
                link = _make_dirs(root, entry.path[:-1], created) / entry.path[-1]
                link.symlink_to(targets[id(entry)])
                links.append(link)
    _check_links_inside(root, links)
    for directory, mode in created.items():
        directory.chmod(mode)
