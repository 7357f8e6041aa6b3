"""A bounded schemathesis run against the real service (uvicorn, Edge, the tiny model): generated requests,
valid and invalid, with and without the API key. No answer may be a 5xx, every status code must be one the
OpenAPI schema lists for the route, and every body must match the schema it gives."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from indexer.encoder import BGEM3Encoder  # noqa: E402
from tests.helpers import SAMPLES, make_settings  # noqa: E402
from tests.service_helpers import serve  # noqa: E402

KEY = "fuzz-key"
# Per operation, with and without the key: 8 operations x 2 x 25 = at most 400 requests. A deeper run:
# SERVICE_FUZZ_EXAMPLES=1000 pytest tests/test_service_fuzz.py
EXAMPLES = int(os.environ.get("SERVICE_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def fuzz_url(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    s = make_settings(
        tiny_model_dir,
        tmp_path_factory.mktemp("fuzz") / "store",
        service={"max_upload_bytes": 256 * 1024, "max_json_bytes": 256 * 1024},
    )
    with serve(s, encoder, [SAMPLES / "en" / "remote-work-policy.md"], api_key=KEY) as url:
        yield url


# Checks: every default one (no 5xx, status codes, content types, headers and bodies as documented, invalid
# data rejected, auth enforced, ...) but "valid data accepted": the schema cannot say everything the service
# checks (a blank query, a file's type, a filter's semantics), and those answers are documented 4xx. A body
# over the limit is a rejection too (413).
CONFIG = {
    "checks": {
        "positive_data_acceptance": {"enabled": False},
        "negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]},
    }
}


@pytest.fixture(scope="module")
def api_schema(fuzz_url: str) -> object:
    config = schemathesis.config.SchemathesisConfig.from_dict(CONFIG)
    return schemathesis.openapi.from_url(f"{fuzz_url}/openapi.json", config=config, headers={"X-API-Key": KEY})


BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same requests on every run: CI failures reproduce
    suppress_health_check=list(HealthCheck),
    database=None,
)
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/search"),
    ("POST", "/search/batch"),
    ("POST", "/context"),
    ("POST", "/documents"),
    ("DELETE", "/documents/{doc_id}"),
    ("GET", "/collections/{name}"),
    ("POST", "/documents/delete"),
    ("POST", "/documents/metadata"),
    ("GET", "/metrics"),
]


def test_the_fuzzed_operations_are_all_the_schema_has(api_schema: object) -> None:
    ops = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}  # type: ignore[attr-defined]
    assert ops == set(OPERATIONS)


@pytest.mark.slow
@pytest.mark.parametrize("with_key", [True, False], ids=["with-key", "without-key"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_generated_requests(api_schema: object, method: str, path: str, with_key: bool) -> None:
    operation = api_schema[path][method]  # type: ignore[index]
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))
    headers = {"X-API-Key": KEY} if with_key else None

    @given(case=cases)
    @BOUNDED
    def run(case: object) -> None:
        case.call_and_validate(headers=headers)  # type: ignore[attr-defined]

    run()
