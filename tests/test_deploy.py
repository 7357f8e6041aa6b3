"""Deployment files: no Docker engine runs here, so check what can be checked without one."""

import json
import re
from pathlib import Path

import pytest
import yaml

from indexer import cli as indexer_cli
from indexer.config import ENV_OVERRIDES
from retriever import cli as retriever_cli

REPO = Path(__file__).resolve().parent.parent


def test_compose_pins_qdrant_and_takes_the_key_from_the_environment() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    qdrant = compose["services"]["qdrant"]
    assert qdrant["image"].startswith("qdrant/qdrant:v1.20.")
    assert {"6333:6333", "6334:6334"} <= set(qdrant["ports"])
    assert qdrant["environment"]["QDRANT__SERVICE__API_KEY"].startswith("${QDRANT_API_KEY")
    assert "healthcheck" in qdrant and "qdrant_storage" in compose["volumes"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "make test"
    assert "make test" in (REPO / "README.md").read_text()


# ----------------------------------------------------------------- the retriever service and the ingest job

COMPOSE_VAR = re.compile(r"\$\{(?P<name>[A-Z_]+)(?::?[-?](?P<default>[^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with every variable unset (``${VAR:?msg}`` must not appear in commands)."""
    return COMPOSE_VAR.sub(lambda m: m["default"] or "", value)


def services() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def test_retriever_service_waits_for_a_healthy_qdrant_and_has_its_own_healthcheck() -> None:
    svc = services()["retriever"]
    assert svc["depends_on"] == {"qdrant": {"condition": "service_healthy"}}
    assert svc["build"] == "." and svc["restart"] == "unless-stopped"
    assert svc["ports"] == ["${RETRIEVER_PORT:-8000}:8000"]
    test = svc["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"] and "/readyz" in test[3]
    compile(test[3], "healthcheck", "exec")  # the probe is valid Python
    assert {"interval", "timeout", "retries", "start_period"} <= svc["healthcheck"].keys()


def test_configuration_comes_from_the_environment() -> None:
    svc, job = services()["retriever"], services()["ingest"]
    for env in (svc["environment"], job["environment"]):
        assert env["QDRANT_URL"] == "http://qdrant:6333"  # the compose network name of the qdrant service
        assert env["QDRANT_API_KEY"].startswith("${QDRANT_API_KEY:?")
        assert env["INDEXER_MODEL"] == "${INDEXER_MODEL:-BAAI/bge-m3}"
    assert svc["environment"]["RETRIEVER_API_KEY"] == "${RETRIEVER_API_KEY:-}"
    assert "RETRIEVER_API_KEY" not in job["environment"]
    # Every variable the app reads is one the config loader knows (secrets never in files).
    for env in (svc["environment"], job["environment"]):
        assert set(env) <= set(ENV_OVERRIDES) | {"QDRANT_URL"}


def test_commands_parse_with_the_real_command_line_parsers() -> None:
    svc, job = services()["retriever"], services()["ingest"]
    cmd = [interpolate(a) for a in svc["command"]]
    assert cmd[:2] == ["retriever", "serve"]
    args = retriever_cli.build_parser().parse_args(cmd[1:])
    assert (args.host, args.port, args.collection) == ("0.0.0.0", 8000, "documents")

    assert job["profiles"] == ["ingest"] and job["restart"] == "no"
    assert job["depends_on"] == {"qdrant": {"condition": "service_healthy"}}
    cmd = [interpolate(a) for a in job["command"]]
    args = indexer_cli.build_parser().parse_args(cmd[1:])
    assert args.command == "ingest" and args.paths == [Path("/docs")] and args.collection == "documents"
    assert "${DOCS_DIR:-./docs}:/docs:ro" in job["volumes"]
    assert svc["image"] == job["image"]  # one image for both


def test_dockerfile_serves_on_the_port_compose_maps() -> None:
    text = (REPO / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0].startswith("FROM python:3.1")
    cmd = json.loads([line for line in lines if line.startswith("CMD ")][-1][4:])  # the last CMD wins
    args = retriever_cli.build_parser().parse_args(cmd[1:])
    assert cmd[0] == "retriever" and (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8000)
    assert "EXPOSE 8000" in lines and any(line.startswith("HEALTHCHECK") for line in lines)
    assert "USER app" in lines and '".[service]"' in text
    # Everything the image copies exists, and the build context leaves out what it does not need.
    for line in lines:
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), src
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".qdrant"} <= set(ignored)


# ----------------------------------------------------------------- the cluster profile

PEERS = ["qdrant-1", "qdrant-2", "qdrant-3"]


def test_cluster_profile_runs_three_peers_in_cluster_mode() -> None:
    svc = services()
    for i, name in enumerate(PEERS, start=1):
        peer = svc[name]
        assert peer["profiles"] == ["cluster"] and peer["image"] == svc["qdrant"]["image"]
        env = peer["environment"]
        assert env["QDRANT__CLUSTER__ENABLED"] == "true" and env["QDRANT__CLUSTER__P2P__PORT"] == "6335"
        assert env["QDRANT__SERVICE__API_KEY"].startswith("${QDRANT_API_KEY:?")
        assert peer["volumes"] == [f"qdrant_peer_{i}:/qdrant/storage"]  # each peer its own storage
        assert {"interval", "timeout", "retries", "start_period"} <= peer["healthcheck"].keys()
    assert svc["qdrant-1"]["command"] == ["./qdrant", "--uri", "http://qdrant-1:6335"]
    for name in PEERS[1:]:
        assert svc[name]["command"] == [
            "./qdrant",
            "--bootstrap",
            "http://qdrant-1:6335",
            "--uri",
            f"http://{name}:6335",
        ]
        assert svc[name]["depends_on"] == {"qdrant-1": {"condition": "service_healthy"}}
        assert "ports" not in svc[name]  # reached through the compose network (and qdrant-1's ports)
    assert {"6333:6333", "6334:6334"} <= set(svc["qdrant-1"]["ports"])


def test_the_peer_healthcheck_asks_readyz(tmp_path: Path) -> None:
    """The probe runs here with bash against a loopback server answering /readyz as Qdrant does."""
    import http.server
    import shutil
    import subprocess
    import threading

    if shutil.which("bash") is None:
        pytest.skip("no bash here")
    test = services()["qdrant-1"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"]
    answers: list[int] = []

    class Readyz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = answers.pop(0) if self.path == "/readyz" else 404
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"all shards are ready" if status == 200 else b"some shards are not ready")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Readyz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    probe = test[3].replace("127.0.0.1/6333", f"127.0.0.1/{server.server_address[1]}")
    try:
        answers.append(200)
        assert subprocess.run(["bash", "-c", probe], timeout=10).returncode == 0
        answers.append(503)
        assert subprocess.run(["bash", "-c", probe], timeout=10).returncode != 0
    finally:
        server.shutdown()
        server.server_close()


def test_the_cluster_service_and_ingest_job_use_the_cluster() -> None:
    from indexer.config import ENV_CONFIG_PATH

    svc, job = services()["retriever-cluster"], services()["ingest-cluster"]
    for s in (svc, job):
        env = s["environment"]
        assert env["QDRANT_URL"] == "http://qdrant-1:6333"
        assert env[ENV_CONFIG_PATH] == "/app/configs/cluster.toml"
        assert (REPO / "configs" / "cluster.toml").is_file() and "COPY configs ./configs" in (
            REPO / "Dockerfile"
        ).read_text()
        assert set(env) <= set(ENV_OVERRIDES) | {"QDRANT_URL", ENV_CONFIG_PATH}
        assert s["depends_on"] == {p: {"condition": "service_healthy"} for p in PEERS}
        assert s["image"] == services()["retriever"]["image"]
    assert svc["profiles"] == ["cluster"] and "/readyz" in svc["healthcheck"]["test"][3]
    args = retriever_cli.build_parser().parse_args([interpolate(a) for a in svc["command"]][1:])
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8000)
    assert job["profiles"] == ["cluster-ingest"] and job["restart"] == "no"
    args = indexer_cli.build_parser().parse_args([interpolate(a) for a in job["command"]][1:])
    assert args.command == "ingest" and args.paths == [Path("/docs")]


def test_the_cluster_config_makes_a_sharded_replicated_collection() -> None:
    from indexer.config import load_settings
    from indexer.schema import CollectionSpec
    from indexer.store.qdrant_params import collection_params

    s = load_settings(REPO / "configs" / "cluster.toml", env={})
    params = collection_params(CollectionSpec.for_model(s.collection, 1024, 1024, s.chunking.chunk_size))
    assert (params["shard_number"], params["replication_factor"], params["write_consistency_factor"]) == (6, 2, 1)
    # BGE-M3: 512 tokens x 1024 x float16 = 1 MiB of ColBERT per chunk; segments of 20,000 chunks, indexed from 2,500
    assert params["optimizers_config"].max_segment_size == 1024 * 20_000
    assert params["optimizers_config"].indexing_threshold == 1024 * 2_500
    assert s.qdrant.write_ordering == "medium"
