"""PDF through pypdf: the text of each page, and the outline (bookmarks) as headings where there is one."""

from __future__ import annotations

import io
import logging
import re
from typing import Any

from indexer.errors import LoaderError
from indexer.loaders.structure import HeadingMark, clean_title

logger = logging.getLogger(__name__)


def pdf_pages(data: bytes, name: str, password: str | None = None) -> tuple[list[str], list[tuple[int, int, str]]]:
    """Page texts and outline entries ``(page index, depth, title)`` in outline order."""
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
        pages = [page.extract_text() or "" for page in reader.pages]
    except LoaderError:
        raise
    except FileNotDecryptedError as e:
        raise LoaderError(f"{name}: the PDF is encrypted with a password (set ingest.pdf_password)") from e
    except DependencyError as e:
        raise LoaderError(f"{name}: the PDF's encryption needs a crypto library: {e}") from e
    except Exception as e:  # pypdf raises many types on damaged files; none must stop the run
        raise LoaderError(f"{name}: cannot read PDF, the file is damaged ({type(e).__name__}: {e})") from e
    return pages, _outline(reader, name)


def _outline(reader: Any, name: str) -> list[tuple[int, int, str]]:
    """The outline's entries with the page each points to; a broken outline is ignored (the text is what counts)."""
    entries: list[tuple[int, int, str]] = []

    def walk(items: list[Any], depth: int) -> None:
        for item in items:
            if isinstance(item, list):  # the children of the entry before it
                walk(item, depth + 1)
                continue
            try:
                page = reader.get_destination_page_number(item)
            except Exception:  # an entry pointing nowhere, or to a missing page
                continue
            title = clean_title(str(getattr(item, "title", "") or ""))
            if title and page is not None and page >= 0:
                entries.append((page, depth, title))

    try:
        walk(reader.outline, 1)
    except Exception as e:
        logger.warning("%s: the PDF's outline cannot be read (%s: %s); no headings from it", name, type(e).__name__, e)
        return []
    return entries


def outline_marks(
    entries: list[tuple[int, int, str]], page_texts: list[str], page_starts: list[int]
) -> list[HeadingMark]:
    """Heading marks at the outline's titles: where a title's words appear on its page, else the page's start."""
    marks: list[HeadingMark] = []
    searched_from: dict[int, int] = {}
    for page, depth, title in entries:
        if page >= len(page_texts):
            continue
        text = page_texts[page]
        pattern = r"\s+".join(re.escape(w) for w in title.split())
        found = re.compile(pattern, re.IGNORECASE).search(text, searched_from.get(page, 0))
        at = found.start() if found else searched_from.get(page, 0)  # keeps the outline's order
        if found:
            searched_from[page] = found.end()
        marks.append(HeadingMark(page_starts[page] + at, depth, title))
    return marks
