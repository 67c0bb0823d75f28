"""Schemathesis against the real gateway (uvicorn, Redis, S3, Celery workers of the tests/stack plugin):
every generated and documented request gets no 5xx and an answer that conforms to the OpenAPI document
(status code, content type, headers, body schema). Bounded: a fixed number of examples per operation,
derandomized.

No DNS lookups of outside names: every `media_url` and `callback_url` the generator or the document's
examples produce (https://example.com/...) is replaced by a loopback URL before the request is sent, since
the gateway resolves both at submission. Media URLs point at a path of the scripted loopback server that
answers 404, so accepted jobs fail fast in the fetch stage instead of loading the workers.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.budget import count_example
from tests.stack.gateway_support import Gateway
from tests.stack.servers import ScriptedHTTPServer

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

#: Requests per operation (12 operations): about 300 requests in all, well under a minute on 2 cores.
EXAMPLES_PER_OPERATION = 25
URL_FIELDS = ("media_url", "callback_url")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def gateway_document() -> dict[str, Any]:
    """The gateway's OpenAPI document, built in-process at collection (no servers needed for it);
    `test_the_served_document_is_the_one_tested` checks that the running gateway serves the same one.

    (Schemathesis' lazy `from_fixture` loader would take it from the running gateway instead, but 4.32 reads a
    private pytest attribute that pytest 9 no longer has.)
    """
    from deepfake_gateway.main import create_app

    return create_app().openapi()


DOCUMENT = gateway_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_served_document_is_the_one_tested(gateway: Gateway) -> None:
    served = httpx.get(f"{gateway.url}/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == DOCUMENT


def loopback_urls(body: Any, http_server: ScriptedHTTPServer) -> Any:
    """`body` with every URL field replaced by a loopback URL (a 404 media path, a webhook path)."""
    if isinstance(body, dict):
        for field in URL_FIELDS:
            if field in body and isinstance(body[field], str):
                body[field] = http_server.url(f"/fuzz/{field}")
    return body


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_gateway_answers_conform_to_openapi(
    case: schemathesis.Case, gateway: Gateway, http_server: ScriptedHTTPServer
) -> None:
    count_example(f"schemathesis {case.operation.label}")
    case.body = loopback_urls(case.body, http_server)
    headers = {"Authorization": f"Bearer {gateway.key('alpha')}"}
    case.call_and_validate(base_url=gateway.url, headers=headers, checks=CHECKS, timeout=60)
