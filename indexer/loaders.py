"""Find source files and turn each into a Document (text + page layout)."""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from indexer.errors import LoaderError
from indexer.models import Document, PageSpan, SourceFile
from indexer.validation import check_doc_id, check_file_name, check_metadata, check_source_name

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
PDF_SUFFIXES = frozenset({".pdf"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | PDF_SUFFIXES
PAGE_SEPARATOR = "\n\n"  # between the texts of two PDF pages


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


def is_supported(name: str) -> bool:
    return Path(name).suffix.lower() in SUPPORTED_SUFFIXES


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _looks_binary(data: bytes) -> bool:
    sample = data[:65536]
    if b"\x00" in sample:
        return True
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    return controls > len(sample) * 0.05


def _is_cyrillic(c: str) -> bool:
    return "\u0400" <= c <= "\u04ff"


# Letter frequencies of Russian text (per mille), to tell cp1251 from KOI8-R: each reads the other's
# bytes as other letters, most of them rare.
_RUSSIAN_FREQ = dict(
    zip(
        "оеаинтсрвлкмдпуяыьгзбчйхжшюцщэфъё",
        (
            110,
            85,
            80,
            74,
            67,
            63,
            55,
            47,
            45,
            44,
            35,
            32,
            30,
            28,
            26,
            20,
            19,
            17,
            17,
            16,
            16,
            14,
            12,
            10,
            9,
            7,
            6,
            5,
            4,
            3,
            2,
            1,
            1,
        ),
        strict=True,
    )
)


def _cyrillic_encoding(data: bytes) -> str | None:
    """cp1251 or KOI8-R when the bytes read as Russian text in one of them, else None.

    Statistical detectors misread short Russian texts (a five-letter word comes out as Urdu or
    Big5); our users' most common legacy files are Russian, so these two are tried first. Russian
    reads as words of Cyrillic letters; a Western text read as cp1251 gives lone Cyrillic letters
    inside Latin words ("cafй"). Between the two, the reading with the more Russian letter
    frequencies and the more lower case wins (each reads the other's lower case as upper case).
    """
    best, best_score = None, 0.0
    for encoding in ("cp1251", "koi8_r"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        high = in_words = lower = 0
        freq = 0.0
        for i, c in enumerate(text):
            if ord(c) <= 127:
                continue
            high += 1
            if not _is_cyrillic(c):
                continue
            around = text[max(i - 1, 0) : i] + text[i + 1 : i + 2]
            if any(n.isascii() and n.isalpha() for n in around):
                continue  # a lone letter inside a Latin word
            if any(_is_cyrillic(n) for n in around):
                in_words += 1
                lower += c.islower()
                freq += _RUSSIAN_FREQ.get(c.lower(), 0)
        if not high or in_words / high < 0.6:
            continue
        score = (freq + 30 * lower) / in_words  # running text is mostly lower case
        if score > best_score:
            best, best_score = encoding, score
    return best


def _detected_encoding(data: bytes, name: str) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(data[: 1 << 20]).best()
    if best is None or best.chaos > 0.3:
        raise LoaderError(f"{name}: not UTF-8 and no text encoding fits; re-save it as UTF-8")
    return best.encoding


def decode_text(data: bytes, name: str) -> tuple[str, str]:
    """Text and the encoding it was read with: UTF-8 (BOM or not), UTF-16 with a BOM, else detected.

    Legacy single-byte encodings (cp1251 Russian, cp1252, ...) are detected with charset-normalizer;
    bytes that look binary, or that no encoding explains, are a clear error, never mojibake.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        try:
            data.decode("utf-8")
            encoding = "utf-8-sig"
        except UnicodeDecodeError:
            if _looks_binary(data):
                raise LoaderError(f"{name}: this looks like a binary file, not text") from None
            encoding = _cyrillic_encoding(data) or _detected_encoding(data, name)
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as e:
        raise LoaderError(f"{name}: cannot decode as {encoding}: {e}") from e
    if "\x00" in text:
        raise LoaderError(f"{name}: contains NUL characters; this looks like a binary file, not text")
    return text.replace("\r\n", "\n").replace("\r", "\n"), encoding.replace("utf-8-sig", "utf-8")


def _pdf_pages(data: bytes, name: str, password: str | None = None) -> list[str]:
    import io

    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            opened = False
            for pw in dict.fromkeys(p for p in (password, "") if p is not None):
                if reader.decrypt(pw):
                    opened = True
                    break
            if not opened:
                hint = "the configured password does not open it" if password else "set ingest.pdf_password"
                raise LoaderError(f"{name}: the PDF is encrypted with a password ({hint})")
        return [page.extract_text() or "" for page in reader.pages]
    except LoaderError:
        raise
    except FileNotDecryptedError as e:
        raise LoaderError(f"{name}: the PDF is encrypted with a password (set ingest.pdf_password)") from e
    except DependencyError as e:
        raise LoaderError(f"{name}: the PDF's encryption needs a crypto library: {e}") from e
    except Exception as e:  # pypdf raises many types on damaged files; none must stop the run
        raise LoaderError(f"{name}: cannot read PDF, the file is damaged ({type(e).__name__}: {e})") from e


def build_document(
    doc_id: str, source: str, data: bytes, page_texts: list[str], metadata: dict[str, Any] | None = None
) -> Document:
    """Join page texts into one text and remember where each page lies in it."""
    parts: list[str] = []
    spans: list[PageSpan] = []
    offset = 0
    for number, page_text in enumerate(page_texts, start=1):
        if parts:
            parts.append(PAGE_SEPARATOR)
            offset += len(PAGE_SEPARATOR)
        parts.append(page_text)
        spans.append(PageSpan(number=number, start=offset, end=offset + len(page_text)))
        offset += len(page_text)
    return Document(
        doc_id=doc_id,
        source=source,
        content_hash=sha256_bytes(data),
        text="".join(parts),
        pages=tuple(spans) or (PageSpan(1, 0, 0),),
        metadata=dict(metadata or {}),
    )


def load_bytes(
    data: bytes,
    name: str,
    doc_id: str | None = None,
    source: str | None = None,
    metadata: dict[str, Any] | None = None,
    pdf_password: str | None = None,
) -> Document:
    """A Document from a file's bytes; ``name`` gives the type (by suffix) and, by default, id and source.

    Raises ``InvalidInputError`` for a name, doc id or source that cannot be stored (control characters,
    text that is not valid Unicode) and for metadata ``check_metadata`` refuses; ``LoaderError`` for
    bytes that cannot be read as a document of ``name``'s type.
    """
    check_file_name(name)
    doc_id = check_doc_id(doc_id if doc_id is not None else name)
    source = check_source_name(source if source is not None else name)
    meta = check_metadata(metadata)
    suffix = Path(name).suffix.lower()
    if not data:
        raise LoaderError(f"{name}: the file is empty (0 bytes)")
    if suffix in PDF_SUFFIXES:
        pages = _pdf_pages(data, name, pdf_password)
        if not any(p.strip() for p in pages):
            raise LoaderError(f"{name}: no extractable text (a scanned PDF needs OCR first)")
    elif suffix in TEXT_SUFFIXES:
        text, encoding = decode_text(data, name)
        if not text.strip():
            raise LoaderError(f"{name}: the file is empty (only whitespace)")
        pages = [text]
        if encoding != "utf-8":
            meta.setdefault("encoding", encoding)
    else:
        raise LoaderError(f"{name}: unsupported file type {suffix or '(none)'!r}")
    return build_document(doc_id, source, data, pages, meta)


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


def load_file(
    source: SourceFile,
    metadata: dict[str, Any] | None = None,
    max_bytes: int | None = None,
    pdf_password: str | None = None,
    data: bytes | None = None,
) -> Document:
    """Read one source file. Its doc id is its path relative to the ingest root."""
    if data is None:
        data = read_source(source, max_bytes)
    return load_bytes(
        data,
        source.rel_path,
        doc_id=source.rel_path,
        source=str(source.path),
        metadata=metadata,
        pdf_password=pdf_password,
    )
