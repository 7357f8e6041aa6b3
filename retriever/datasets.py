"""Evaluation sets in the BEIR layout, and a builder for one made from the system's man pages.

BEIR layout: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``) and
``qrels/<split>.tsv`` (header ``query-id corpus-id score``).

``python -m retriever.datasets manpages OUT_DIR --limit 300`` writes a known-item set: the query is a
page's one-line NAME description, the one relevant document is that page (its NAME section removed).
Pages are rendered by groff (``-mandoc``, plain UTF-8 text) and sampled deterministically.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from indexer.errors import IndexerError

logger = logging.getLogger(__name__)


class DatasetError(IndexerError):
    """An evaluation set is missing, malformed, or cannot be built."""


@dataclass(frozen=True, slots=True)
class BeirDataset:
    name: str
    corpus: dict[str, tuple[str, str]]  # doc id -> (title, text)
    queries: dict[str, str]  # query id -> text
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)  # query id -> {doc id: relevance}


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"{path} not found (a BEIR dataset has corpus.jsonl, queries.jsonl and qrels/)")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{n}: not valid JSON: {e}") from e
            if not isinstance(row, dict) or "_id" not in row:
                raise DatasetError(f"{path}:{n}: a record needs an _id")
            rows.append(row)
    return rows


def load_beir(path: str | Path, split: str = "test") -> BeirDataset:
    """Read a BEIR dataset folder; only queries that have a relevant document are kept."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} not found")
    corpus = {
        str(r["_id"]): (str(r.get("title") or ""), str(r.get("text") or "")) for r in _read_jsonl(root / "corpus.jsonl")
    }
    queries = {str(r["_id"]): str(r.get("text") or "") for r in _read_jsonl(root / "queries.jsonl")}
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise DatasetError(f"{qrels_path} not found")
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if n == 1 and parts[:2] == ["query-id", "corpus-id"]:
                continue
            if not line.strip():
                continue
            if len(parts) != 3:
                raise DatasetError(f"{qrels_path}:{n}: expected query-id, corpus-id and score separated by tabs")
            qid, did, score = parts
            try:
                rel = int(float(score))
            except ValueError:
                raise DatasetError(f"{qrels_path}:{n}: score {score!r} is not a number") from None
            if qid not in queries:
                raise DatasetError(f"{qrels_path}:{n}: unknown query id {qid!r}")
            if did not in corpus:
                raise DatasetError(f"{qrels_path}:{n}: unknown corpus id {did!r}")
            qrels.setdefault(qid, {})[did] = rel
    qrels = {q: docs for q, docs in qrels.items() if any(r > 0 for r in docs.values())}
    if not corpus or not qrels:
        raise DatasetError(f"{root}: the corpus or the judged queries are empty")
    empty = [q for q in qrels if not queries[q].strip()]
    if empty:
        raise DatasetError(f"{root}: query {empty[0]!r} is empty")
    return BeirDataset(name=root.name, corpus=corpus, queries={q: queries[q] for q in qrels}, qrels=qrels)


def write_beir(ds: BeirDataset, out: str | Path, split: str = "test") -> Path:
    root = Path(out)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for did, (title, text) in ds.corpus.items():
            f.write(json.dumps({"_id": did, "title": title, "text": text}, ensure_ascii=False) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as f:
        for qid, text in ds.queries.items():
            f.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    with (root / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in ds.qrels.items():
            for did, rel in docs.items():
                f.write(f"{qid}\t{did}\t{rel}\n")
    return root


# ------------------------------------------------------------------------------------ man pages

_DASH = re.compile(r"\s+[-\u2010\u2011\u2012\u2013\u2014\u2212]\s+")
_HEADING = re.compile(r"^[A-Z][A-Z0-9 ,/&()-]*$")


def render_man_page(path: Path, width: int = 100, timeout: float = 20.0) -> str:
    """A man page as plain text (groff's -mandoc, UTF-8, no bold/underline/SGR escapes)."""
    groff = shutil.which("groff")
    if groff is None:
        raise DatasetError("groff is not installed; it renders the man pages (apt-get install groff)")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    if raw.lstrip().startswith(b".so "):
        return ""  # a redirect to another page
    try:
        done = subprocess.run(
            [groff, "-mandoc", "-Tutf8", "-P-cbou", f"-rLL={width}n", "-rHY=0", "-t"],
            input=raw,
            capture_output=True,
            timeout=timeout,
            check=False,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
        )
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout.decode("utf-8", "replace")


def split_man_text(text: str) -> tuple[str, str]:
    """(one-line NAME description, the page without its NAME section, header and footer)."""
    lines = [ln.rstrip() for ln in text.splitlines()]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) < 4:
        return "", ""
    lines = lines[1:-1]  # running header ("LS(1) User Commands LS(1)") and footer
    body: list[str] = []
    name: list[str] = []
    section = None
    for ln in lines:
        if ln and not ln[0].isspace() and _HEADING.match(ln.strip()):
            section = ln.strip()
            if section == "NAME":
                continue
        if section == "NAME":
            name.append(ln.strip())
        else:
            body.append(ln)
    parts = _DASH.split(" ".join(x for x in name if x), maxsplit=1)
    description = " ".join(parts[1].split()) if len(parts) == 2 else ""
    return description, re.sub(r"\n{3,}", "\n\n", "\n".join(body)).strip()


def man_page_files(man_dir: Path, sections: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for s in sections:
        folder = man_dir / f"man{s}"
        if folder.is_dir():
            files.extend(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
    return sorted(files)


def page_id(path: Path) -> str:
    return path.name[:-3] if path.name.endswith(".gz") else path.name


def page_family(path: Path) -> str:
    """``git`` for git-commit.1, ``gcloud`` for gcloud_beta_dns.1: pages of one tool look alike."""
    return re.split(r"[-_.]", path.name, maxsplit=1)[0].lower()


def build_manpages(
    man_dir: str | Path = "/usr/share/man",
    limit: int = 300,
    sections: Sequence[str] = ("1", "8"),
    max_chars: int = 3000,
    min_words: int = 3,
    per_family: int = 3,
) -> BeirDataset:
    """A known-item set of ``limit`` pages: query = the NAME description, relevant = that page.

    The sample is deterministic (pages ordered by a hash of their file name); redirects, pages
    without a usable NAME line or body, and pages whose description is shared with another page are
    skipped, and at most ``per_family`` pages of one tool are taken (so that e.g. the hundreds of
    near-identical ``gcloud alpha/beta`` pages do not dominate). Each document is cut to
    ``max_chars`` characters to bound the encoding time.
    """
    files = man_page_files(Path(man_dir), sections)
    if not files:
        raise DatasetError(f"no man pages under {man_dir} (sections {', '.join(sections)})")
    files.sort(key=lambda p: hashlib.sha256(p.name.encode()).hexdigest())
    pages: dict[str, tuple[str, str]] = {}
    seen: dict[str, str] = {}
    dropped: set[str] = set()
    families: dict[str, int] = {}
    for path in files:
        if len(pages) >= limit:
            break
        family = page_family(path)
        if families.get(family, 0) >= per_family:
            continue
        description, body = split_man_text(render_man_page(path))
        if len(description.split()) < min_words or len(body.split()) < 20:
            continue
        key = description.lower()
        if key in seen:  # two pages, one description: the query would be ambiguous
            pages.pop(seen[key], None)
            dropped.add(key)
            continue
        if key in dropped:
            continue
        pid = page_id(path)
        families[family] = families.get(family, 0) + 1
        seen[key] = pid
        pages[pid] = (description, body[:max_chars])
    if not pages:
        raise DatasetError(f"no usable man pages under {man_dir}")
    corpus = {pid: (pid, body) for pid, (_, body) in pages.items()}
    queries = {f"q-{pid}": desc for pid, (desc, _) in pages.items()}
    qrels = {f"q-{pid}": {pid: 1} for pid in pages}
    return BeirDataset(name="manpages", corpus=corpus, queries=queries, qrels=qrels)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retriever.datasets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("manpages", help="build a known-item set from the system's man pages")
    p.add_argument("out", help="output folder (BEIR layout)")
    p.add_argument("--limit", type=int, default=300, help="number of pages (default 300)")
    p.add_argument("--man-dir", default="/usr/share/man")
    p.add_argument("--sections", default="1,8", help="comma-separated man sections (default 1,8)")
    p.add_argument("--max-chars", type=int, default=3000, help="characters kept per page (default 3000)")
    p.add_argument("--per-family", type=int, default=3, help="pages per tool, e.g. git-* (default 3)")
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error("--limit must be at least 1")
    try:
        ds = build_manpages(
            args.man_dir, args.limit, args.sections.split(","), args.max_chars, per_family=args.per_family
        )
        write_beir(ds, args.out)
    except IndexerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    print(f"wrote {len(ds.corpus)} documents and {len(ds.queries)} queries to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
