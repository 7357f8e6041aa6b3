"""A search on the embedded engine (Qdrant Edge) pays for the model and the query only: it imports no
qdrant-client, grpc or httpx (2 s of CPU; README, "Start-up, measured").

Checked in fresh processes (this one imported them long ago): the requests are engine-neutral
(``indexer.requests``) and only a server or local-mode store translates them to qdrant-client models.
Each check has a control that does import qdrant-client, so that the check can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer import cli as indexer_cli
from indexer.encoder import BGEM3Encoder
from retriever import Retriever
from tests.helpers import REPO, SAMPLES, make_settings

CLIENT_MODULES = ("qdrant_client", "grpc", "httpx")
COLLECTION = "startup_docs"

# `python -m retriever ARGS...` in this process, then what it imported (the last line of stdout).
RUN_CLI = f"""
import json, runpy, sys
sys.argv = ["retriever", *sys.argv[1:]]
try:
    runpy.run_module("retriever", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({CLIENT_MODULES!r}))
print(json.dumps({{"code": code, "loaded": loaded}}))
"""

# Searches of every mode (with MMR, a simple filter and a tenant) from embeddings given as JSON: no model.
RUN_PLAN = f"""
import json, sys
import numpy as np
from indexer.models import Embedding, SparseVec
from retriever import Retriever
from tests.helpers import make_settings

model, store, spec, filter = sys.argv[1:5]
e = json.loads(spec)
query = Embedding(np.array(e["dense"], np.float32), SparseVec(tuple(e["indices"]), tuple(e["values"])),
                  np.array(e["colbert"], np.float32))
settings = make_settings(model, store, collection={{"name": "{COLLECTION}"}})
answers = {{}}
with Retriever(settings) as r:
    for mode in ("dense", "sparse", "hybrid", "hybrid_dbsf", "hybrid_colbert", "colbert", "m3"):
        options = {{"filter": json.loads(filter)}} if filter else {{}}
        [hits] = r.search_embeddings([query], limit=4, mode=mode, **options)
        [diverse] = r.search_embeddings([query], limit=4, mode=mode, diversity=0.5, **options)
        [tenant] = r.for_tenant("nobody").search_embeddings([query], limit=4, mode=mode, **options)
        answers[mode] = [[h.id for h in hits], [h.id for h in diverse], len(tenant)]
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({CLIENT_MODULES!r}))
print(json.dumps({{"answers": answers, "loaded": loaded}}))
"""


@pytest.fixture(scope="module")
def edge_store(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    store = tmp_path_factory.mktemp("startup") / "store"
    args = ["ingest", str(SAMPLES / "en"), str(SAMPLES / "ru"), "--qdrant-path", str(store)]
    args += ["--model", str(tiny_model_dir), "--collection", COLLECTION, "--no-progress"]
    assert indexer_cli.main(args) == 0  # closes the store: the subprocesses open it
    yield store


def last_json(out: subprocess.CompletedProcess[str]) -> dict:
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=REPO, timeout=600)
    return last_json(done)


def test_searches_of_every_mode_on_edge_import_no_client(
    tiny_model_dir: Path, encoder: BGEM3Encoder, edge_store: Path
) -> None:
    settings = make_settings(tiny_model_dir, edge_store, collection={"name": COLLECTION})
    [e] = encoder.encode_queries(["remote work equipment"])
    assert e.colbert is not None
    spec = {
        "dense": e.dense.tolist(),
        "indices": list(e.sparse.indices),
        "values": list(e.sparse.values),
        "colbert": e.colbert.tolist(),
    }
    simple = run(RUN_PLAN, str(tiny_model_dir), str(edge_store), json.dumps(spec), '["page>=1", "doc_id!=x"]')
    assert simple["loaded"] == []
    plain = run(RUN_PLAN, str(tiny_model_dir), str(edge_store), json.dumps(spec), "")
    assert plain["loaded"] == []
    assert all(hits and diverse and tenant == 0 for hits, diverse, tenant in plain["answers"].values())
    qdrant_syntax = '{"must": [{"key": "page", "range": {"gte": 1}}]}'  # the control: read by qdrant-client
    control = run(RUN_PLAN, str(tiny_model_dir), str(edge_store), json.dumps(spec), qdrant_syntax)
    assert "qdrant_client" in control["loaded"]
    assert control["answers"] == simple["answers"]  # the same filter in both syntaxes, the same answers
    with Retriever(settings, encoder=encoder) as r:  # and in this process, where qdrant-client is loaded
        for mode, (hits, diverse, _) in plain["answers"].items():
            [here] = r.search_embeddings([e], limit=4, mode=mode)
            [here_diverse] = r.search_embeddings([e], limit=4, mode=mode, diversity=0.5)
            assert ([h.id for h in here], [h.id for h in here_diverse]) == (hits, diverse), mode


@pytest.mark.slow
def test_the_search_command_on_edge_imports_no_client(tiny_model_dir: Path, edge_store: Path) -> None:
    args = ["search", "remote work equipment", "--qdrant-path", str(edge_store), "--model", str(tiny_model_dir)]
    args += ["--collection", COLLECTION, "--json", "--limit", "3"]
    done = subprocess.run([sys.executable, "-c", RUN_CLI, *args], capture_output=True, text=True, cwd=REPO, timeout=600)
    result = last_json(done)
    assert result == {"code": 0, "loaded": []}
    hits = json.loads("\n".join(done.stdout.strip().splitlines()[:-1]))
    assert len(hits) == 3
    control = last_json(
        subprocess.run(
            [
                sys.executable,
                "-c",
                RUN_CLI,
                *args,
                "--filter",
                '{"must": [{"key": "chunk_index", "range": {"gte": 0}}]}',
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=600,
        )
    )
    assert control["code"] == 0 and "qdrant_client" in control["loaded"]
