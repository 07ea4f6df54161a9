"""schemathesis against the API's own OpenAPI document: generated requests, valid and
not, must never give a 5xx and every response must match the document."""

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import TEST_PORTS

# /stream never ends by design (Server-Sent Events); tests/api/test_stream.py covers it.
SKIPPED_PATHS = {"/stream"}
# "Schema-valid data must be accepted" cannot hold for rules OpenAPI cannot state (from <= to);
# every other default check stays: no 5xx, status codes, content types, response schemas.
NOT_EXPRESSIBLE = [positive_data_acceptance]


def test_every_endpoint_honours_its_openapi_document(api):
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{TEST_PORTS.api}/openapi.json", wait_for_schema=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    checked = []
    for operation in operations:
        if operation.path in SKIPPED_PATHS:
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def conforms(case):
            case.call_and_validate(timeout=10, excluded_checks=NOT_EXPRESSIBLE)

        conforms()
        checked.append(operation.path)
    assert {"/candles", "/symbols", "/trades", "/stats", "/completeness"} <= set(checked)
