"""Property-based fuzzing of the OpenAPI schema (schemathesis) against a real server.

Every operation gets generated valid and invalid requests; the daemon must
never answer 5xx, must answer only documented status codes and content types
with bodies matching the documented schemas, and must keep the stage within
its Z limits and stay ready. Bounded: a few examples per operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from autofocus.logging import configure_logging
from autofocus.service.api import create_app
from autofocus.service.api.server import BackgroundServer
from autofocus.settings import load_settings

# The schema comes from the app itself (no server needed at collection time); the calls
# go to a real server below.
schema = schemathesis.openapi.from_dict(create_app(load_settings(None)).openapi())


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    configure_logging("console", "error")
    db = tmp_path_factory.mktemp("fuzz") / "jobs.db"
    # Short job time limit so generated requests with huge frame budgets end quickly.
    settings = load_settings(None, database_path=db, queue_max=4, max_upload_mb=2.0)
    with BackgroundServer(settings) as srv:
        yield srv


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, fuzz_server):
    if case.query and "wait" in case.query:
        case.query["wait"] = 0.2  # generated waits up to an hour would only slow the run
    if isinstance(case.body, dict):
        limit = case.body.get("timeout_s")
        if isinstance(limit, int | float) and not isinstance(limit, bool) and limit > 2:
            case.body["timeout_s"] = 2.0
    case.call_and_validate(
        base_url=fuzz_server.url,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        timeout=30,
    )
    manager = fuzz_server.manager
    mic = manager.microscope
    limits = mic.z_limits_um
    assert all(limits.contains(z) for z in mic.commanded_z_um)
    assert manager.ready and manager.worker_alive
