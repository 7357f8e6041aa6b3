"""Deployment files: no Docker engine runs here, so check what can be checked without one."""

import json
import re
from pathlib import Path

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
