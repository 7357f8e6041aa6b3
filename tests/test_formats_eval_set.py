"""The structured evaluation set (benchmarks/formats_corpus.py): every answer is once in its document,
inside a numbered section, read back through the real loaders."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.formats_corpus import write_corpus
from indexer.loaders import discover, load_file


def test_every_answer_lies_once_in_a_numbered_section(tmp_path: Path) -> None:
    docs, queries = write_corpus(tmp_path)
    loaded = {s.rel_path: load_file(s) for s in discover([tmp_path / "docs"])}
    assert set(loaded) == {d.name for d in docs}
    assert {Path(name).suffix for name in loaded} == {".docx", ".html", ".md"}
    assert len(queries) >= 50 and len({q.qid for q in queries}) == len(queries)
    assert any("а" <= c <= "я" for q in queries for c in q.text)  # Russian queries too
    for q in queries:
        doc = loaded[q.doc]
        assert doc.text.count(q.answer) == 1, q.qid
        at = doc.text.index(q.answer)
        [section] = [s for s in doc.sections if s.start <= at < s.end]
        assert len(section.headings) >= 2 and section.headings[-1][0].isdigit(), (q.qid, section.headings)
    qrels = (tmp_path / "qrels" / "test.tsv").read_text().splitlines()
    assert qrels[0] == "query-id\tcorpus-id\tscore" and len(qrels) == len(queries) + 1
    first = json.loads((tmp_path / "answers.jsonl").read_text().splitlines()[0])
    assert first["answer"] == queries[0].answer
