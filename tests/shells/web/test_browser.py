"""The dashboard in headless Chromium (Debian's `chromium`, driven by Playwright) on the demo world.

Each role signs in through the form with the keyboard, opens every page its navigation offers and
leaves a screenshot of each; the marketer switches the period, opens a chart's table from the keyboard,
searches a customer with online and store activity and sees both in the timeline, and edits and saves
the plan. No page may log an error, no request may fail, and nothing may be fetched from anywhere but
the dashboard's own origin (the pages vendor ECharts and htmx). Needs Debian's chromium and the
`playwright` package (skipped locally without them, a failure when CI=true), as tests/collect/test_browser.py.
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omniweave.privacy.roles import ROLES
from omniweave.shells.web.app import NAV_ORDER, PAGES
from tests.collect.test_browser import NetworkLog, browser  # noqa: F401  (the shared chromium fixture)
from tests.shells.web.conftest import PASSWORD, Dashboard, email_of, serve_home
from tests.shells.web.test_customers import customer  # noqa: F401  (a customer with online and store touches)

pytestmark = pytest.mark.browser
TIMEOUT_MS = 120_000
"""A page computes its reports on first view; a loaded 2-core machine is slow."""


@pytest.fixture
def screens(tmp_path: Path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


def _page(browser: Any) -> Iterator[tuple[Any, NetworkLog]]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    log = NetworkLog()
    log.attach(page)
    yield page, log
    context.close()


def _sign_in(page: Any, dashboard: Dashboard, role: str, target: str = "/app/overview") -> None:
    page.goto(f"{dashboard.base_url}{target}")
    assert "/app/login" in page.url
    page.get_by_label("E-mail").focus()
    page.keyboard.type(email_of(role))
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{target}*")


def _charts_drawn(page: Any) -> None:
    """Every chart of the page has its canvas (ECharts drew it)."""
    charts = page.locator("div.chart[data-option]")
    for i in range(charts.count()):
        charts.nth(i).locator("canvas").first.wait_for(state="attached")


@pytest.mark.parametrize("role", list(ROLES))
def test_each_role_opens_every_page_it_may(
    browser: Any,  # noqa: F811
    dashboard: Dashboard,
    role: str,
    screens: Path,
) -> None:
    for page, log in _page(browser):
        _sign_in(page, dashboard, role)
        from omniweave.privacy.roles import ROLES as SCOPES

        allowed = [n for n in NAV_ORDER if n in PAGES and PAGES[n].scope in SCOPES[role]]
        links = page.get_by_role("navigation", name="Pages").get_by_role("link")
        assert [links.nth(i).inner_text() for i in range(links.count())] == [PAGES[n].label for n in allowed]
        for name in allowed:
            page.get_by_role("navigation", name="Pages").get_by_role("link", name=PAGES[name].label).click()
            page.wait_for_url(f"**/app/{name}*")
            page.locator("h1").first.wait_for()
            _charts_drawn(page)
            assert page.locator('[aria-current="page"]').inner_text() == PAGES[name].label
            shot = screens / f"{role}-{name}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        for name in (n for n in NAV_ORDER if n in PAGES and n not in allowed):
            refused = page.goto(f"{dashboard.base_url}/app/{name}")
            assert refused is not None and refused.status == 403
            # expected: the answer's status, and the console's note of it
            log.failures = [f for f in log.failures if f"/app/{name}: HTTP 403" not in f]
            log.console_errors = [e for e in log.console_errors if "status of 403 (Forbidden)" not in e]
        log.assert_stayed_local(dashboard.base_url)


def test_the_marketer_switches_the_period_and_reads_a_chart_as_a_table(
    browser: Any,  # noqa: F811
    dashboard: Dashboard,
    screens: Path,
) -> None:
    for page, log in _page(browser):
        _sign_in(page, dashboard, "marketer")
        month = page.locator("#chosen-period").inner_text()
        page.get_by_label("Period").select_option("week")
        page.wait_for_url("**period=week*")
        week = page.locator("#chosen-period").inner_text()
        assert week != month and page.get_by_label("Period").input_value() == "week"
        _charts_drawn(page)
        # the table behind the revenue chart, from the keyboard
        toggle = page.locator('[data-table-toggle="tbl-revenue_split"]')
        toggle.focus()
        page.keyboard.press("Enter")
        assert toggle.get_attribute("aria-expanded") == "true"
        table = page.locator("#tbl-revenue_split table")
        assert table.is_visible() and table.locator("tbody tr").count() >= 1
        # its CSV is the same table
        with page.expect_download() as download:
            page.locator("#fig-revenue_split").get_by_role("link", name="CSV").click()
        text = Path(download.value.path()).read_text(encoding="utf-8")
        assert text.splitlines()[0] == "period,online,in store"
        assert len(text.splitlines()) == table.locator("tbody tr").count() + 1
        page.screenshot(path=str(screens / "marketer-overview-week.png"), full_page=True)
        log.assert_stayed_local(dashboard.base_url)


def test_the_marketer_edits_and_saves_the_plan(
    browser: Any,  # noqa: F811
    dashboard: Dashboard,
    tmp_path: Path,
    screens: Path,
) -> None:
    home = tmp_path / "home"  # saving writes plan.toml into the home: a copy of the shared one
    shutil.copytree(dashboard.home, home)
    for url in serve_home(home):
        for page, log in _page(browser):
            _sign_in(page, Dashboard(url, home), "marketer", "/app/plan")
            page.get_by_label("Name").fill("Spring: web shoppers into the stores")
            page.get_by_label("Total").fill("20000")
            for channel in ("email", "store"):
                page.locator(f'input[name="channels"][value="{channel}"]').check()
            page.locator('input[name="personas"]').first.check()
            kpis = ("page_views", "store_visits", "revenue_total")
            for i in range(3):
                page.locator(f'[name="goals[{i}].name"]').fill(f"Goal {i + 1}")
                for j, kpi in enumerate(kpis):
                    at = f"goals[{i}].kpis[{j}]"
                    page.locator(f'[name="{at}.kpi"]').select_option(kpi)
                    page.locator(f'[name="{at}.target"]').fill(str(1000 * (j + 1) + i))
                    page.locator(f'[name="{at}.by"]').fill("2026-12-31")
            page.get_by_role("button", name="Save the plan").click()
            page.wait_for_url("**/app/plan*")
            page.get_by_text("Spring: web shoppers into the stores").first.wait_for()
            saved = tomllib.loads((home / "plan.toml").read_text(encoding="utf-8"))
            assert saved["name"] == "Spring: web shoppers into the stores"
            assert [g["name"] for g in saved["goals"]] == ["Goal 1", "Goal 2", "Goal 3"]
            assert [k["kpi"] for k in saved["goals"][2]["kpis"]] == list(kpis)
            assert [k["target"] for k in saved["goals"][2]["kpis"]] == [1002, 2002, 3002]
            _charts_drawn(page)
            page.screenshot(path=str(screens / "marketer-plan-saved.png"), full_page=True)
            log.assert_stayed_local(url)


ONLINE = ("web", "app", "email", "sms", "whatsapp", "push", "social", "search", "display")


def test_a_search_finds_a_customer_with_online_and_store_touches_in_one_timeline(
    browser: Any,  # noqa: F811
    dashboard: Dashboard,
    customer: dict[str, Any],  # noqa: F811
    screens: Path,
) -> None:
    for role in ("marketer", "analyst"):
        for page, log in _page(browser):
            _sign_in(page, dashboard, role, "/app/customers")
            page.get_by_label("Any identifier", exact=False).fill(customer["card"])
            page.keyboard.press("Enter")
            page.wait_for_url("**/app/customers?q=*")
            assert page.locator("#person-id").inner_text().strip() == customer["person_id"]
            assert page.locator('tr[data-channel="store"]').first.is_visible()
            assert any(page.locator(f'tr[data-channel="{c}"]').count() for c in ONLINE)
            text = page.locator("main").inner_text()
            if role == "analyst":  # personal data masked
                assert customer["email"] not in text and customer["email"].split("@")[0] not in text
            else:
                assert customer["email"] in text
            page.screenshot(path=str(screens / f"{role}-customer.png"), full_page=True)
            log.assert_stayed_local(dashboard.base_url)
