"""Segment's browser SDK, analytics-next, unchanged, in headless Chromium against `omniweave serve`.

The bundles are vendored from the npm package (tests/assets/README.md) and served, with the test
pages, by a small static server on another port, so every call to the collector is cross-origin
(CORS, with a preflight, because analytics-next sends `Authorization: Basic`). Chromium runs with
a host resolver that resolves nothing but 127.0.0.1, and the test checks that every request the
page made went to one of the two local servers and succeeded.

Two ways a website loads analytics-next:

- the npm package's UMD bundle, `AnalyticsBrowser.load({writeKey, cdnURL: <omniweave>})`: the
  settings document and the API host in it come from omniweave; a link with `ajs_aid` makes it
  load a code-split chunk (queryString) from the static server;
- the official snippet and the standalone bundle, with `analytics._cdn = <omniweave>` and calls
  queued on the snippet's stub before the bundle loads.

Needs Debian's `chromium` (apt-get install -y chromium) and the `playwright` Python package;
Playwright's own browser download is never used. Skipped locally without chromium, a failure
when CI=true.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import LiveServer

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ASSETS = Path(__file__).parents[1] / "assets"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    # Nothing but 127.0.0.1 resolves, so nothing can leave the machine even where there is a network.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
UTM = "utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the browser test must run in CI: {reason}")
    pytest.skip(reason)


# --- fixtures -----------------------------------------------------------------------------


class _StaticHandler(SimpleHTTPRequestHandler):
    """Serves tests/assets, uncached, quietly."""

    extensions_map: ClassVar[dict[str, str]] = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".html": "text/html",
    }

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def static_site() -> Iterator[str]:
    """The test pages and vendored bundles on http://127.0.0.1:<port>/ (a different origin from the collector)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_StaticHandler, directory=str(ASSETS)))
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian chromium, driven by Playwright (which never downloads a browser of its own)."""
    executable = shutil.which("chromium")
    if executable is None:
        _unavailable("Debian's chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        _unavailable("the playwright Python package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@dataclass
class NetworkLog:
    """Every request a page made, what came back, and what the console said."""

    requests: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("request", lambda r: self.requests.append(f"{r.method} {r.url}"))
        page.on("requestfailed", lambda r: self.failures.append(f"{r.method} {r.url}: {r.failure}"))
        page.on(
            "response",
            lambda r: r.status >= 400 and self.failures.append(f"{r.request.method} {r.url}: HTTP {r.status}"),
        )
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.console_errors.append(f"uncaught: {e}"))

    def assert_stayed_local(self, *origins: str) -> None:
        outside = [r for r in self.requests if _origin(r.split(" ", 1)[1]) not in origins]
        assert outside == [], f"requests that left the two local servers: {outside}"
        assert self.failures == [], f"failed requests: {self.failures}"
        assert self.console_errors == [], f"errors in the page: {self.console_errors}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, NetworkLog]]:
    context = browser.new_context()
    tab = context.new_page()
    log = NetworkLog()
    log.attach(tab)
    yield tab, log
    context.close()


# --- the event log ------------------------------------------------------------------------


def wait_for_events(server: LiveServer, expected: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The events in the log once there are at least `expected` of them (fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        rt = server.runtime()
        try:
            rows = (
                rt.warehouse()
                .sql(
                    "select message_id, source, type, event, user_id, anonymous_id, channel, campaign_source, "
                    "campaign_medium, campaign_name, context, properties, traits from events order by timestamp"
                )
                .to_pylist()
            )
        finally:
            rt.close()
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.25)


def source_id(server: LiveServer) -> str:
    rt = server.runtime()
    try:
        return str(next(row["id"] for row in rt.store.list_sources() if row["write_key"] == server.write_key))
    finally:
        rt.close()


def assert_browser_events(
    rows: list[dict[str, Any]],
    server: LiveServer,
    *,
    page_url: str,
    page_name: str,
    page_user_id: str | None,
    user_id: str,
    anonymous_id: str,
    track_event: str,
    campaign: tuple[str, str, str],
    email: str,
) -> None:
    """page, identify, track: one each, linked by the anonymousId, with the page's campaign."""
    assert sorted(r["type"] for r in rows) == ["identify", "page", "track"], rows
    assert len({r["message_id"] for r in rows}) == 3
    by_type = {r["type"]: r for r in rows}
    sid = source_id(server)
    for row in rows:
        context = json.loads(row["context"])
        assert row["source"] == sid
        assert row["anonymous_id"] == anonymous_id
        assert row["message_id"].startswith("ajs-next-")
        assert context["library"]["name"] == "analytics.js"
        assert context["page"]["url"] == page_url
        assert (row["campaign_source"], row["campaign_medium"], row["campaign_name"]) == campaign
        assert row["channel"] == "web"
    assert by_type["page"]["user_id"] == page_user_id
    assert by_type["page"]["event"] == page_name
    assert by_type["identify"]["user_id"] == user_id
    assert json.loads(by_type["identify"]["traits"])["email"] == email
    assert by_type["track"]["user_id"] == user_id
    assert by_type["track"]["event"] == track_event


# --- tests --------------------------------------------------------------------------------


def test_settings_document_points_analytics_next_back_at_the_collector(
    live_server: LiveServer,
) -> None:
    """What analytics-next fetches first: `GET <cdnURL>/v1/projects/<writeKey>/settings`, cross-origin."""
    response = httpx.get(
        f"{live_server.base_url}/v1/projects/{live_server.write_key}/settings",
        headers={"Origin": "http://127.0.0.1:1"},
    )
    assert response.status_code == 200
    assert response.headers.get("access-control-allow-origin") in ("*", "http://127.0.0.1:1")
    segment_io = response.json()["integrations"]["Segment.io"]
    assert segment_io["apiKey"] == live_server.write_key
    host = urlsplit(live_server.base_url).netloc
    assert segment_io["apiHost"] in (host, f"{host}/v1")
    assert segment_io.get("protocol") == "http"


DELIVERY = {
    # one request per event to <apiHost>/p, /i, /t (analytics-next's default)
    "standard": ({}, ["/v1/p", "/v1/i", "/v1/t"]),
    # events buffered and sent together to <apiHost>/b
    "batching": (
        {
            "integrations": {
                "Segment.io": {
                    "deliveryStrategy": {
                        "strategy": "batching",
                        "config": {"size": 3, "timeout": 200},
                    }
                }
            }
        },
        ["/v1/b"],
    ),
}


@pytest.mark.browser
@pytest.mark.parametrize("delivery", list(DELIVERY))
def test_analytics_next_npm_bundle_delivers_to_the_collector(
    live_server: LiveServer, static_site: str, page: tuple[Any, NetworkLog], delivery: str
) -> None:
    tab, network = page
    options, paths = DELIVERY[delivery]
    link_anonymous_id = "anon-from-email-link-1"
    url = f"{static_site}/analytics-next/umd.html?{UTM}&ajs_aid={link_anonymous_id}"
    tab.goto(url)
    identity = tab.evaluate(
        """async ({writeKey, collector, options}) => {
            const [analytics] = await AnalyticsNext.AnalyticsBrowser.load({writeKey, cdnURL: collector}, options);
            const delivered = [];
            for (const call of [
                () => analytics.page('Pricing', {plan: 'gold'}),
                () => analytics.identify('user-42', {email: 'user-42@example.com'}),
                () => analytics.track('Product Viewed', {product_id: 'sku-1', price: 9.99}),
            ]) {
                const ctx = await call();
                delivered.push(ctx.failedDelivery() ? String(ctx.failedDelivery().reason) : 'ok');
            }
            return {anonymousId: analytics.user().anonymousId(), userId: analytics.user().id(), delivered};
        }""",
        {"writeKey": live_server.write_key, "collector": live_server.base_url, "options": options},
    )
    assert identity == {
        "anonymousId": link_anonymous_id,
        "userId": "user-42",
        "delivered": ["ok", "ok", "ok"],
    }

    rows = wait_for_events(live_server, 3)
    assert_browser_events(
        rows,
        live_server,
        page_url=url,
        page_name="Pricing",
        page_user_id=None,
        user_id="user-42",
        anonymous_id=link_anonymous_id,
        track_event="Product Viewed",
        campaign=("newsletter", "email", "spring-sale"),
        email="user-42@example.com",
    )
    assert json.loads(next(r for r in rows if r["type"] == "track")["properties"]) == {
        "product_id": "sku-1",
        "price": 9.99,
    }
    # The settings document came from omniweave, and the events went where it said.
    assert f"GET {live_server.base_url}/v1/projects/{live_server.write_key}/settings" in network.requests
    for path in paths:
        assert f"POST {live_server.base_url}{path}" in network.requests, network.requests
    # The ajs_aid link was handled by a code-split chunk, fetched from the static server.
    assert any(
        r.startswith(f"GET {static_site}/analytics-next/bundles/queryString.bundle.") for r in network.requests
    ), network.requests
    network.assert_stayed_local(static_site, live_server.base_url)


@pytest.mark.browser
def test_analytics_js_snippet_with_standalone_bundle_delivers_queued_calls(
    live_server: LiveServer, static_site: str, page: tuple[Any, NetworkLog]
) -> None:
    tab, network = page
    url = f"{static_site}/analytics-next/snippet.html?utm_source=poster&utm_medium=print&utm_campaign=spring-sale"
    tab.goto(url)
    api_host = f"{urlsplit(live_server.base_url).netloc}/v1"
    tab.evaluate(
        """({writeKey, collector, apiHost}) => {
            analytics._writeKey = writeKey;      // what rendering the snippet with the key does
            analytics._cdn = collector;          // settings document from omniweave
            analytics.page('Home');
            analytics.identify('user-7', {email: 'user-7@example.com'});
            analytics.track('Signed Up', {plan: 'free'});
            analytics.load(writeKey, {integrations: {'Segment.io': {apiHost, protocol: 'http'}}});
        }""",
        {"writeKey": live_server.write_key, "collector": live_server.base_url, "apiHost": api_host},
    )
    tab.wait_for_function("window.analytics && window.analytics.initialized === true")
    anonymous_id = tab.evaluate("analytics.user().anonymousId()")
    assert anonymous_id

    rows = wait_for_events(live_server, 3)
    # Calls queued on the snippet are replayed in order, but analytics-next fills in userId when it
    # sends an event, so the page call (sent after identify ran) carries user-7 as well.
    assert_browser_events(
        rows,
        live_server,
        page_url=url,
        page_name="Home",
        page_user_id="user-7",
        user_id="user-7",
        anonymous_id=anonymous_id,
        track_event="Signed Up",
        campaign=("poster", "print", "spring-sale"),
        email="user-7@example.com",
    )
    network.assert_stayed_local(static_site, live_server.base_url)
