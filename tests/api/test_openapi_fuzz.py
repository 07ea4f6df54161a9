"""schemathesis against the API's own OpenAPI document, every operation, every default
check: generated requests that fit the document must be accepted, those that do not must
be rejected, none may give a 5xx, and every response must match what the document says
(status, content type, headers, body; for /stream each event of its first seconds).

/stream never ends: schemathesis reads an event stream until `max-stream-events` events
or the request timeout, then closes it and checks what arrived.

One rule of the api cannot be written in OpenAPI: `from` not after `to` (two parameters
compared). validation.Ranged states it once, the parameters' descriptions say it, and
its 400 is documented. Positive data is data that keeps every documented rule, so the
positive cases are drawn with that rule kept too; negative cases may break it."""

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.conftest import TEST_PORTS, get_json

STREAM_SECONDS = 2  # how long a /stream case is read at most (keep-alives come every second in tests)


def in_order(case) -> bool:
    """The cross-parameter rule: `from` not after `to` (validation.Ranged)."""
    query = case.query or {}
    start, end = query.get("from"), query.get("to")
    return not (isinstance(start, int) and isinstance(end, int) and start > end)


def test_every_endpoint_honours_its_openapi_document(api):
    # gunicorn refuses a request line over 4,094 bytes with 414 before the api sees it (the
    # document says so on every path): for negative data that is a rejection too.
    defaults = schemathesis.Config().projects.default.checks.negative_data_rejection.expected_statuses
    rejections = [*defaults, "414"]
    config = schemathesis.Config.from_dict({"max-stream-events": 4, "checks": {
        "negative_data_rejection": {"expected-statuses": rejections}}})
    base = f"http://127.0.0.1:{TEST_PORTS.api}"
    # Loaded as a document (from_url leaves out the operation serving the document itself).
    status, document = get_json(f"{base}/openapi.json", timeout_s=30)
    assert status == 200, document
    schema = schemathesis.openapi.from_dict(document, config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    checked = []
    for operation in operations:
        streaming = operation.path == "/stream"
        # Without parameters there is nothing wrong to send (no negative data).
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if any(operation.iter_parameters()) else (
            GenerationMode.POSITIVE,)
        for mode in modes:
            strategy = operation.as_strategy(generation_mode=mode)
            if mode is GenerationMode.POSITIVE:
                strategy = strategy.filter(in_order)

            @given(case=strategy)
            @settings(max_examples=15 if streaming else 40, deadline=None, suppress_health_check=list(HealthCheck),
                      database=None)
            def conforms(case):
                case.call_and_validate(base_url=base, timeout=STREAM_SECONDS if streaming else 10)

            conforms()
        checked.append(operation.path)
    assert set(checked) == {"/", "/openapi.json", "/candles", "/symbols", "/trades", "/stats", "/completeness",
                            "/stream", "/healthz", "/readyz", "/metrics", "/udf/config", "/udf/symbols", "/udf/search",
                            "/udf/history", "/udf/time"}
