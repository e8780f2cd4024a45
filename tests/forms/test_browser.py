"""Sign-up forms in headless Chromium against `omniweave serve`: the hosted page and the embedded snippet
on another origin, the confirmation mail on a local SMTP server, the click, and the consent with its evidence.

Nothing but 127.0.0.1 resolves in the browser; every request must go to one of the two local servers and
succeed, and the page logs no error. Needs Debian's `chromium` and the `playwright` package (skipped
locally without them, a failure when CI=true), as tests/collect/test_browser.py.
"""

from __future__ import annotations

import copy
import functools
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from omniweave.forms import service as F
from omniweave.identity.service.resolve import resolve
from omniweave.privacy.service.consent import consent_of
from omniweave.profiles.service.build import build_profiles
from omniweave.profiles.service.lookup import find_person, person_view
from omniweave.runtime import Runtime
from omniweave.settings import load_settings
from tests.collect.test_browser import NetworkLog, browser  # noqa: F401  (the shared chromium fixture)
from tests.conftest import free_port, start_server
from tests.forms.conftest import NEWSLETTER, Mailbox, write_home

pytestmark = pytest.mark.browser
BRAND_PRIMARY = ("#7A1FA2", "rgb(122, 31, 162)")
"""The project's brand kit colour: the hosted and the embedded form's button wear it."""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _shop_page(folder: Path, server_url: str) -> None:
    """A shop's page on another origin that embeds the form with the snippet (and has analytics.js's cookie)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(
        f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<link rel="icon" href="data:,"></head><body>
<h1>Welcome to the shop</h1>
<div data-omniweave-form="newsletter" data-placement="embed"></div>
<script>document.cookie = "ajs_anonymous_id=%22shop-visitor-7%22; path=/";</script>
<script src="{server_url}/f/static/embed.js" async></script>
</body></html>""",
        encoding="utf-8",
    )
    (folder / "framed.html").write_text(  # the variant for pages (and visitors) without JavaScript
        f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<link rel="icon" href="data:,"></head><body>
<h1>Welcome to the shop</h1>
<iframe title="Newsletter" src="{server_url}/f/newsletter?placement=embed" width="600" height="900"></iframe>
</body></html>""",
        encoding="utf-8",
    )


@pytest.fixture
def world(tmp_path: Path, mailbox: tuple[Mailbox, int]) -> Iterator[dict[str, Any]]:
    """`omniweave serve` with the newsletter form (the shop's origin allowed), and the shop's static site."""
    site = tmp_path / "site"
    shop = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=shop.serve_forever, daemon=True).start()
    shop_url = f"http://127.0.0.1:{shop.server_address[1]}"
    port = free_port()
    server_url = f"http://127.0.0.1:{port}"
    form = copy.deepcopy(NEWSLETTER)
    form["allowed_origins"] = [shop_url]
    home = tmp_path / "home"
    write_home(home, mailbox[1], server_url, [form])
    (home / "brand.yaml").write_text(
        f'name: "Shop.example"\ncolours: {{primary: "{BRAND_PRIMARY[0]}"}}\nfooter: "Shop.example Ltd"\n',
        encoding="utf-8",
    )
    _shop_page(site, server_url)
    process, _ = start_server(home, port)
    try:
        yield {"home": home, "server": server_url, "shop": shop_url, "box": mailbox[0]}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        shop.shutdown()
        shop.server_close()


@pytest.fixture
def tab(browser: Any) -> Iterator[tuple[Any, NetworkLog]]:  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    log = NetworkLog()
    log.attach(page)
    yield page, log
    context.close()


def _runtime(world: dict[str, Any]) -> Runtime:
    return Runtime(load_settings(home=str(world["home"])))


def _form_events(runtime: Runtime) -> list[dict[str, Any]]:
    forms = runtime.store.ensure_source(F.SOURCE)
    return [orjson.loads(r.payload) for r in runtime.store.read(after=0) if r.source_id == forms]


def _profile(runtime: Runtime, email: str, message_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """The person of `email` as `profile show` and /v1/profiles show them, once the server's own loader has
    put the event `message_id` into the log, after a resolve and a profiles build."""
    deadline = time.monotonic() + timeout
    sql = f"select count(*) as n from events where message_id = '{message_id}'"
    while True:
        fresh = Runtime(runtime.settings)
        try:
            if "events" in fresh.warehouse().names() and fresh.warehouse().sql(sql).to_pylist()[0]["n"]:
                resolve(fresh)
                build_profiles(fresh)
                found = find_person(fresh, f"email:{email}")
                assert found is not None
                return person_view(fresh, *found).to_dict()
        finally:
            fresh.close()
        assert time.monotonic() < deadline, f"the server's loader did not load {message_id} in {timeout:.0f} s"
        time.sleep(0.5)


def _assert_brand_look(page: Any) -> None:
    button = page.get_by_role("button", name="Sign up")
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == BRAND_PRIMARY[1]
    trap = page.locator("input[name=website]").bounding_box()  # the honeypot is out of a person's sight
    assert trap is not None and trap["x"] + trap["width"] <= 0, trap


def _confirm_in_browser(page: Any, world: dict[str, Any], email: str) -> None:
    link = world["box"].confirm_link(email)
    assert link.startswith(world["server"] + "/f/confirm/")
    page.goto(link)
    page.get_by_role("button").click()
    page.wait_for_selector("[data-ow-confirm=confirmed]")


def _assert_consent_with_evidence(runtime: Runtime, email: str, ip: str = "127.0.0.1") -> tuple[str, dict[str, Any]]:
    """The consent history, its evidence and the profile after the click; (the sign-up's placement, the person)."""
    view = consent_of(runtime, f"email:{email}")
    assert view.current == {"email": True, "personalisation": True}
    references = {s.reference for s in view.history}
    [reference] = references
    proof = F.evidence(runtime, reference)
    assert proof.status == "confirmed" and proof.confirmed_via == "email"
    assert proof.submitted_ip == ip and proof.confirmed_ip == ip
    assert proof.confirmed_at is not None and proof.confirmed_at >= proof.submitted_at
    assert [p["wording"] for p in proof.purposes] == ["E-mail me news and offers", "Tailor the offers to me"]
    person = _profile(
        runtime, email, reference
    )  # the profile shows the consent; its Sign-up Confirmed names the evidence
    assert person["profile"] is not None
    assert (person["profile"]["consent_email"], person["profile"]["consent_purpose_personalisation"]) == (True, True)
    confirmed = [e["message_id"] for e in person["timeline"] if e["event"] == F.SIGNUP_CONFIRMED]
    assert confirmed == [reference]
    return proof.placement, person


def test_the_hosted_form_in_chromium(world: dict[str, Any], tab: tuple[Any, NetworkLog]) -> None:
    page, log = tab
    page.goto(f"{world['server']}/f/newsletter?placement=web")
    _assert_brand_look(page)
    page.get_by_label("E-mail address").fill("not an address")
    page.get_by_role("button", name="Sign up").click()
    alert = page.get_by_role("alert")
    assert "Please check 1 answer(s)" in alert.inner_text()
    assert page.get_by_label("E-mail address").get_attribute("aria-invalid") == "true"
    # the documented answer to a bad field is a 400 with the form again: expected here, and only it
    assert [f.rsplit(": ", 1)[-1] for f in log.failures] == ["HTTP 400"]
    log.failures.clear()
    log.console_errors.clear()  # Chromium logs every 4xx document as "Failed to load resource"

    page.get_by_label("E-mail address").fill("Hana@Example.com")
    page.get_by_label("First name").fill("Hana")
    page.get_by_label("E-mail me news and offers").check()
    page.get_by_label("Tailor the offers to me").check()
    page.keyboard.press("Enter")  # the keyboard sends it too
    page.wait_for_selector("[data-ow-thanks=newsletter]")
    assert "Please check your inbox to confirm" in page.inner_text("body")

    runtime = _runtime(world)
    try:
        assert consent_of(runtime, "email:hana@example.com").history == ()  # no consent without the click
        [submitted] = [e["messageId"] for e in _form_events(runtime) if e.get("event") == "Form Submitted"]
        before = _profile(runtime, "hana@example.com", submitted)
        assert before["profile"] is not None and before["profile"]["consent_email"] is not True
        _confirm_in_browser(page, world, "hana@example.com")
        assert _assert_consent_with_evidence(runtime, "hana@example.com")[0] == "web"
    finally:
        runtime.close()
    log.assert_stayed_local(world["server"])


def test_the_embedded_form_on_another_origin(world: dict[str, Any], tab: tuple[Any, NetworkLog]) -> None:
    page, log = tab
    page.goto(f"{world['shop']}/index.html")
    page.wait_for_selector("[data-ow-form=newsletter] form")
    _assert_brand_look(page)  # on the shop's page too
    page.get_by_label("E-mail address").fill("ines@")
    page.get_by_role("button", name="Sign up").click()
    alert = page.locator("[data-ow-form=newsletter] [role=alert]")
    alert.wait_for()
    assert "Please check 1 answer(s)" in alert.inner_text()
    assert alert.evaluate("a => document.activeElement === a")  # announced: the snippet moves focus to it
    assert page.get_by_label("E-mail address").get_attribute("aria-invalid") == "true"
    assert [f.rsplit(": ", 1)[-1] for f in log.failures] == ["HTTP 400"]  # the documented answer, and only it
    log.failures.clear()
    log.console_errors.clear()  # Chromium logs every 4xx response as "Failed to load resource"
    page.get_by_label("E-mail address").fill("ines@example.com")
    page.get_by_label("E-mail me news and offers").check()
    page.get_by_label("Tailor the offers to me").check()
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_selector("[data-ow-thanks=newsletter]")
    assert page.url == f"{world['shop']}/index.html"  # the shop's page stayed

    runtime = _runtime(world)
    try:
        submitted = [e for e in _form_events(runtime) if e.get("event") == "Form Submitted"]
        assert [e["anonymousId"] for e in submitted] == ["shop-visitor-7"]  # the page's visitor joins the person
        assert submitted[0]["properties"]["placement"] == "embed"
        assert consent_of(runtime, "email:ines@example.com").history == ()
        _confirm_in_browser(page, world, "ines@example.com")
        placement, person = _assert_consent_with_evidence(runtime, "ines@example.com")
        assert placement == "embed"
        identifiers = person["identifiers"]
        assert {"kind": "anonymous_id", "value": "shop-visitor-7"} in identifiers  # the shop's visitor is her
    finally:
        runtime.close()
    log.assert_stayed_local(world["server"], world["shop"])


def test_without_javascript_the_framed_form_and_the_kiosk_work(world: dict[str, Any], browser: Any) -> None:  # noqa: F811
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log = NetworkLog()
    log.attach(page)
    try:
        page.goto(f"{world['shop']}/framed.html")  # the form framed on the shop's page: plain HTML posts
        frame = page.frame_locator("iframe")
        frame.get_by_label("E-mail address").fill("jo@example.com")
        frame.get_by_label("E-mail me news and offers").check()
        frame.get_by_label("Tailor the offers to me").check()
        frame.get_by_role("button", name="Sign up").click()
        frame.locator("[data-ow-thanks=newsletter]").wait_for()
        assert page.url == f"{world['shop']}/framed.html"

        page.goto(f"{world['server']}/f/newsletter?kiosk=1")  # the till's tablet
        page.get_by_label("E-mail address").fill("kim@example.com")
        page.get_by_label("E-mail me news and offers").check()
        page.get_by_role("button", name="Sign up").click()
        page.wait_for_selector("[data-ow-thanks=newsletter]")
        page.wait_for_selector("[data-ow-form=newsletter]", timeout=60_000)  # back to an empty form by itself
        assert page.get_by_label("E-mail address").input_value() == ""
        assert "kiosk=1" in page.url

        runtime = _runtime(world)
        try:
            submitted = [e for e in _form_events(runtime) if e.get("event") == "Form Submitted"]
            assert [e["properties"]["placement"] for e in submitted] == ["embed", "kiosk"]
            _confirm_in_browser(page, world, "jo@example.com")  # the confirm page is a plain form too
            assert _assert_consent_with_evidence(runtime, "jo@example.com")[0] == "embed"
        finally:
            runtime.close()
        log.assert_stayed_local(world["server"], world["shop"])
    finally:
        context.close()
