"""Bad input, generated: thousands of random requests, and not one 5xx.

API.md promises that input from a client never produces a 5xx (other than the documented 503),
and that every error is JSON with `error` and `detail`. Hypothesis generates methods, paths,
query values, headers and bodies (huge, unicode, malformed, nested) and sends them to both
servers' apps in process, with and without a publish token.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from servers import fastapi_server, flask_server
from servers.contract import ALLOWED_METHODS, MAX_TIMEOUT_S
from servers.startup import ServerConfig

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*install `httpx2` instead")
    from starlette.testclient import TestClient

EXAMPLES_PER_APP = 550  # 4 apps: at least 2,000 requests in all
APPS = [("flask", None), ("fastapi", None), ("flask", "s3cret"), ("fastapi", "s3cret")]
TOTALS: Counter[str] = Counter()


@dataclass
class Answer:
    status: int
    headers: Any
    content: bytes


class App:
    """One server's app, in process, with a short retention and no default hold."""

    def __init__(self, kind: str, token: str | None) -> None:
        # hold=0: a poll without ?timeout= answers at once. retention=5 with 12 events: old
        # cursors hit the 410 path.
        config = ServerConfig(hold=0, retention=5, token=token)
        self.kind = kind
        if kind == "flask":
            self.flask = flask_server.create_app(config)
            log = self.flask.extensions["polling_lab"]["log"]
        else:
            fastapi_app = fastapi_server.create_app(config)
            self.client = TestClient(fastapi_app, raise_server_exceptions=False)
            self.client.__enter__()
            log = fastapi_app.state.log
        for i in range(12):
            log.publish(f"seed {i}")

    def send(self, method: str, path: str, query: list[tuple[str, str]], body: bytes | None,
             headers: dict[str, str]) -> Answer:
        if self.kind == "flask":
            r = self.flask.test_client().open(path, method=method, query_string=query,
                                              data=body, headers=headers)
            return Answer(r.status_code, r.headers, r.get_data())
        response = self.client.request(method, path, params=query, content=body,
                                       headers=headers)
        return Answer(response.status_code, response.headers, response.content)

    def close(self) -> None:
        if self.kind == "fastapi":
            self.client.__exit__(None, None, None)


# --- what gets generated -------------------------------------------------------------------------

PATHS = ["/health", "/events", "/poll_for_updates", "/trigger_event", "/stats"]
PARAMS = ["last_event_id", "limit", "timeout", "message"]
NASTY = ["", " ", "0", "-0", "1e309", "-1e309", "nan", "inf", "0x10", "1_000", "+5", " 5 ",
         "٣", "１", "1.0", "300.0000001", "\x00", "é" * 5000, "9" * 400, "[]", "{}", "null",
         "true", "%", "%ZZ", "\ud7ff", "🎉" * 100]

huge_text = st.integers(4000, 60_000).map(lambda n: "ü" * n)
values = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=40),
    st.sampled_from(NASTY),
    st.integers(4000, 9000).map(lambda n: "ü" * n),
)
# httpx refuses to send a query longer than 65,536 characters once percent-encoded (a real
# server refuses one much shorter), so a query holds at most one huge value.
query = st.lists(st.tuples(st.one_of(st.sampled_from(PARAMS), st.text(max_size=12)), values),
                 max_size=5).filter(lambda q: len(urlencode(q)) < 60_000)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
NASTY_BODIES = [
    b'{"message": "\\ud800"}',  # a lone surrogate: valid JSON, not encodable as UTF-8
    b'{"message": "\\u0000"}',
    b"[" * 50_000 + b"]" * 50_000,  # deeper than the JSON parser recurses
    b'{"message": "' + b"x" * 5000 + b'"}',
    b'{"message": ' + b"1" * 5000 + b"}",
    b"\xff\xfe\x00",
    b'{"message": "ok"',
    b'{"message": "a", "message": 7}',
    b"\xef\xbb\xbf{}",  # a byte-order mark
]
bodies = st.one_of(
    st.none(),
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.just("message"), json_values | huge_text, min_size=1)
    .map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    st.sampled_from(NASTY_BODIES),
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
headers = st.dictionaries(
    st.sampled_from(["Content-Type", "Authorization", "Accept", "X-Stream-Id", "User-Agent",
                     "Cookie", "Accept-Encoding", "X-Forwarded-For"]),
    st.one_of(header_text, st.sampled_from(["application/json", "text/plain",
                                            "Bearer s3cret", "Bearer", "multipart/form-data"])),
    max_size=4,
)
known = st.sampled_from(PATHS)
odd_paths = st.one_of(
    known.map(lambda p: p + "/"),
    known.map(str.upper),
    st.text(max_size=60).map(lambda t: "/" + quote(t, safe="")),
    st.sampled_from(["//events", "/events/../stats", "/%2e%2e/health", "/_proxy/cut"]),
)
# Mostly the real endpoints, where the parameter rules are; sometimes somewhere odd.
paths = st.integers(0, 9).flatmap(lambda n: known if n < 7 else odd_paths)
methods = st.sampled_from(["GET"] * 4 + ["POST"] * 4 + ["PUT", "DELETE", "PATCH", "OPTIONS",
                                                         "HEAD"])


def no_long_hold(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Keep every generated value, except a valid `timeout` above 0: that would really hold
    the request (up to 300 s). Those become 0, which exercises the same parsing."""
    kept = []
    for key, value in pairs:
        if key == "timeout":
            try:
                seconds = float(value.strip())
            except ValueError:
                seconds = math.nan
            if 0 < seconds <= MAX_TIMEOUT_S:
                value = "0"
        kept.append((key, value))
    return kept


# --- the property ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=APPS, ids=[f"{k}-{'token' if t else 'open'}"
                                                   for k, t in APPS])
def app(request: pytest.FixtureRequest) -> Iterator[App]:
    made = App(*request.param)
    yield made
    made.close()


@settings(max_examples=EXAMPLES_PER_APP, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example,
                                 HealthCheck.function_scoped_fixture])
@given(method=methods, path=paths, params=query, body=bodies, head=headers,
       usual_method=st.integers(0, 3).map(bool))
# Cases that must run every time, not only when the generator happens upon them.
@example(method="POST", path="/trigger_event", params=[], body=NASTY_BODIES[0], head={},
         usual_method=True)
@example(method="POST", path="/trigger_event", params=[], body=NASTY_BODIES[2], head={},
         usual_method=True)
@example(method="GET", path="/poll_for_updates",
         params=[("timeout", "nan"), ("last_event_id", "9" * 400), ("limit", "１")], body=None,
         head={"Content-Type": "application/json"}, usual_method=True)
def test_no_input_gets_a_5xx_and_every_error_is_json(app: App, method: str, path: str,
                                                     params: list[tuple[str, str]],
                                                     body: bytes | None,
                                                     head: dict[str, str],
                                                     usual_method: bool) -> None:
    if usual_method and path in ALLOWED_METHODS:  # 3 times in 4: get past the 405
        method = ALLOWED_METHODS[path]
    answer = app.send(method, path, no_long_hold(params), body, head)
    TOTALS["requests"] += 1
    TOTALS[f"{app.kind} {answer.status}"] += 1
    described = f"{method} {path[:80]} {str(params)[:200]} body={str(body)[:120]} -> " \
                f"{answer.status} {answer.content[:300]!r}"
    if answer.status >= 500:
        assert answer.status == 503 and "Retry-After" in answer.headers, described
    if answer.status >= 400 and method != "HEAD":
        assert answer.headers.get("Content-Type", "").startswith("application/json"), described
        error = json.loads(answer.content)
        assert isinstance(error, dict), described
        assert isinstance(error.get("error"), str) and error["error"], described
        assert isinstance(error.get("detail"), str) and error["detail"], described
    elif answer.status < 300 and answer.content and method != "HEAD":
        json.loads(answer.content)  # a success is JSON too (or empty: 204)


def test_report_the_totals(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs after the property (same module, defined later): at least 2,000 requests sent."""
    if TOTALS["requests"] == 0:
        pytest.skip("run together with the property test")
    by_status = Counter()
    for key, n in TOTALS.items():
        if key != "requests":
            by_status[key.split()[1]] += n
    with capsys.disabled():
        print(f"\nfuzz: {TOTALS['requests']} generated requests, statuses "
              f"{dict(sorted(by_status.items()))}")
    assert TOTALS["requests"] >= 2000, TOTALS
    assert not any(int(s) >= 500 and s != "503" for s in by_status), by_status
