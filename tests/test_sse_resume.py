"""A resumed event stream of a finished job ends at once (issue 23, item 5), real uvicorn.

Before: `Last-Event-ID` equal to the last event's id (what a browser's EventSource sends
when it reconnects after the final event) got keep-alives forever; 127 such streams filled
`max_connections` and new clients got 503.
"""

from __future__ import annotations

import time

import httpx
import pytest
from sim_server import sim_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sim_server(tmp_path_factory.mktemp("sse") / "jobs.db", max_connections=8) as srv:
        yield srv


def _read_for(client: httpx.Client, url: str, headers: dict, limit_s: float) -> tuple[str, bool]:
    """The stream's text and whether it ended by itself within `limit_s` seconds."""
    t0 = time.monotonic()
    text = ""
    try:
        with client.stream("GET", url, headers=headers, timeout=limit_s) as r:
            assert r.status_code == 200
            for chunk in r.iter_text():
                text += chunk
                if time.monotonic() - t0 > limit_s:
                    return text, False
    except httpx.ReadTimeout:
        return text, False
    return text, True


def test_stream_resumed_after_the_final_event_ends_at_once(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        job = http.post("/v1/focus", json={"range_um": 24}, params={"wait": 60}).json()
        assert job["state"] in ("succeeded", "failed")
        replay = http.get(f"/v1/jobs/{job['id']}/events").text
        last_id = replay.count("id: ")
        url = f"/v1/jobs/{job['id']}/events"
        # More resumed streams than max_connections: each must end and free its slot.
        for _ in range(12):
            text, ended = _read_for(http, url, {"Last-Event-ID": str(last_id)}, 5.0)
            assert ended and "id: " not in text, text
        text, ended = _read_for(http, url, {"Last-Event-ID": str(last_id + 50)}, 5.0)
        assert ended and text == ""
        # Resuming one event early still gets the final state, then the end.
        text, ended = _read_for(http, url, {"Last-Event-ID": str(last_id - 1)}, 5.0)
        assert ended and text.count("id: ") == 1 and job["state"] in text
        assert http.get("/v1/status").status_code == 200
