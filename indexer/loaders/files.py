"""Finding source files and reading their bytes, with a clear reason when that is not possible."""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from indexer.errors import LoaderError
from indexer.models import SourceFile


def glob_match(rel_path: str, pattern: str) -> bool:
    """Match a POSIX relative path; ``*`` crosses folders and a leading ``**/`` also matches the root."""
    if fnmatch.fnmatchcase(rel_path, pattern):
        return True
    return pattern.startswith("**/") and fnmatch.fnmatchcase(rel_path, pattern[3:])


def discover(
    paths: Iterable[Path | str], include: Iterable[str] = ("**/*",), exclude: Iterable[str] = ()
) -> Iterator[SourceFile]:
    """Yield files under each path, in a stable order; a path given as a file is yielded as is.

    Identity (``rel_path``) is relative to the path given: the root of a folder, or the file's own name.
    Hidden files and folders (name starting with ".") are left out. Symbolic links to files are yielded
    (a broken one fails when loaded, with its reason); links to folders are not followed, so a link
    loop cannot trap the walk.
    """
    include, exclude = tuple(include), tuple(exclude)
    for raw in paths:
        path = Path(raw)
        if path.is_file() or path.is_symlink() and not path.is_dir():
            yield SourceFile(path=path, rel_path=path.name)
            continue
        if not path.is_dir():
            raise LoaderError(f"{path}: no such file or folder")
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                file = Path(folder) / name
                rel = file.relative_to(path).as_posix()
                if any(glob_match(rel, p) for p in include) and not any(glob_match(rel, p) for p in exclude):
                    yield SourceFile(path=file, rel_path=rel)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_source(source: SourceFile, max_bytes: int | None = None) -> os.stat_result:
    """The file's stat, or a LoaderError that says why it cannot be read (links, size, special files)."""
    path, name = source.path, source.rel_path
    try:
        st = path.stat()
    except OSError as e:
        if path.is_symlink():
            if e.errno == errno.ELOOP:
                raise LoaderError(f"{name}: symbolic link loop") from e
            raise LoaderError(f"{name}: broken symbolic link to {os.readlink(path)!r}") from e
        raise LoaderError(f"{name}: cannot read ({e.strerror or e})") from e
    if not stat.S_ISREG(st.st_mode):
        raise LoaderError(f"{name}: not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise LoaderError(f"{name}: {st.st_size} bytes is over the size limit of {max_bytes} (ingest.max_file_bytes)")
    return st


def read_checked(source: SourceFile) -> bytes:
    """The bytes of a file ``check_source`` accepted (reading can still fail: permissions)."""
    try:
        return source.path.read_bytes()
    except OSError as e:
        raise LoaderError(f"{source.rel_path}: cannot read ({e.strerror or e})") from e


def read_source(source: SourceFile, max_bytes: int | None = None) -> bytes:
    """A file's bytes, or a LoaderError that says why not (links, size, permissions, special files)."""
    check_source(source, max_bytes)
    return read_checked(source)
