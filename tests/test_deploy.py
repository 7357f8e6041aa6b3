"""Deployment files: no Docker engine runs here, so check what can be checked without one."""

from pathlib import Path

import yaml

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
