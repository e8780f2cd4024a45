"""The web dashboard: server-rendered pages over the same service layer as the CLI and the API (docs/dashboard.md).

    GET  /                      → /app/
    GET  /app/                  → the first page the signed-in user may open (else the sign-in page)
    GET  /app/login             the sign-in page;   POST /app/login   e-mail and password → the session cookie
    POST /app/logout            ends the session (the page's CSRF token in the form)
    GET  /app/{page}            a page (pages/*.py): Overview, Channels, Stores, Customers, Segments, Journeys,
                                Plan, Privacy; `?csv=<table>` gives one of the page's tables as CSV
    GET  /app/static/{file}     the dashboard's own CSS and JavaScript, and ECharts and htmx vendored from npm

Users sign in with the accounts and roles of `omniweave users` (privacy/roles.py); the session is the API's
(the same cookie), so a page's fetches and the REST API agree on who is asking. Analysts see personal data
masked. Nothing is fetched from another origin: the Content-Security-Policy says so to the browser too.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import QueryParams

from omniweave.errors import InputError
from omniweave.privacy import roles, sessions
from omniweave.privacy.roles import Principal
from omniweave.privacy.service import access
from omniweave.runtime import Runtime
from omniweave.shells.api.deps import RuntimeDep, client_origin
from omniweave.shells.web import view

T = TypeVar("T")
WEB = Path(__file__).resolve().parent
STATIC = WEB / "static"
ENV = Environment(loader=FileSystemLoader(str(WEB / "templates")), autoescape=select_autoescape(["html"]))
ENV.globals.update(number=view.number, percent=view.percent, sparkline=view.sparkline)
ENV.filters["number"] = view.number

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
"""Only our own origin: ECharts draws with inline styles, nothing else is inline."""
SCRIPTS = ("vendor/echarts.min.js", "vendor/htmx.min.js", "dashboard/dashboard.js")
"""The JavaScript every page loads (bench/dashboard.py weighs it)."""
STATIC_FILES = {
    "dashboard/dashboard.css": "text/css",
    "dashboard/dashboard.js": "text/javascript",
    "vendor/echarts.min.js": "text/javascript",
    "vendor/htmx.min.js": "text/javascript",
}


@dataclass(frozen=True)
class Context:
    """What a page builder gets: the runtime, who asks, and the query string. `refresh_in_background`: once
    a report has been computed, a change of the data does not make the next view wait for the new one (the
    server's pages; tests and the warm-up compute afresh)."""

    runtime: Runtime
    principal: Principal
    params: QueryParams
    refresh_in_background: bool = False

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.params.get(name)
        return value if value not in (None, "") else default

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """`compute()`, kept until the warehouse changes (`data_version`): a report over the event log is
        computed once per change of the data, not once per page view. Two requests (or a request and the
        warm-up) asking for the same report at once compute it once: the second waits for the first.

        With `refresh_in_background`, a report computed before the data changed is shown at once while the
        new one is made in a background thread (at a million customers a report takes minutes, and the
        loader adds a file to the log every few seconds under live traffic): a page waits only for the very
        first computation of a report, which the warm-up at sign-in makes."""
        home = self.runtime.settings.home
        slot = (home, key)
        version = data_version(self.runtime)
        hit = _CACHE.get(slot)
        if hit is not None and hit[0] == version:
            return cast(T, hit[1])
        if hit is not None and self.refresh_in_background:
            _refresh_later(self.runtime, slot, compute)
            return cast(T, hit[1])
        with _LOCKS_GUARD:
            lock = _LOCKS.setdefault(slot, threading.Lock())
        with lock:
            version = data_version(self.runtime)
            hit = _CACHE.get(slot)
            if hit is not None and hit[0] == version:
                return cast(T, hit[1])
            value = compute()
            _store(slot, version, value)
            return value


def _store(slot: tuple[str, Hashable], version: tuple[int, ...], value: Any) -> None:
    with _LOCKS_GUARD:
        _CACHE.pop(slot, None)  # the newest last: the oldest go first
        _CACHE[slot] = (version, value)
        while len(_CACHE) > CACHE_ENTRIES:
            _CACHE.pop(next(iter(_CACHE)))


def _refresh_later(runtime: Runtime, slot: tuple[str, Hashable], compute: Callable[[], Any]) -> None:
    """Compute the report of `slot` again in a background thread (one at a time per report)."""
    with _LOCKS_GUARD:
        if slot in _REFRESHING or _STOP.is_set():
            return
        lock = _LOCKS.setdefault(slot, threading.Lock())

        def run() -> None:
            try:
                with lock:
                    version = data_version(runtime)
                    hit = _CACHE.get(slot)
                    if hit is None or hit[0] != version:
                        with contextlib.suppress(Exception):  # the next view tries again
                            _store(slot, version, compute())
            finally:
                with _LOCKS_GUARD:
                    _REFRESHING.pop(slot, None)

        thread = threading.Thread(target=run, name="dashboard-refresh", daemon=True)
        _REFRESHING[slot] = thread
    thread.start()


CACHE_ENTRIES = 64
_CACHE: dict[tuple[str, Hashable], tuple[tuple[int, ...], Any]] = {}
_LOCKS: dict[tuple[str, Hashable], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
_WARMING: dict[str, threading.Thread] = {}
_REFRESHING: dict[tuple[str, Hashable], threading.Thread] = {}
_STOP = threading.Event()


def warm(runtime: Runtime, principal: Principal) -> threading.Thread | None:
    """Build every page `principal` may open once with its default options, in a background thread, so that
    the reports behind them are ready when the pages are opened (started at each sign-in; one at a time per
    home; `stop_warming` ends it at shutdown). A page that fails here fails again, with its message, when it is
    opened. Returns the thread (None when one is running for this home already)."""
    home = runtime.settings.home
    with _LOCKS_GUARD:
        if home in _WARMING:
            return None

        def run() -> None:
            try:
                for name in NAV_ORDER:
                    spec = PAGES.get(name)
                    if _STOP.is_set():
                        return
                    if spec is not None and principal.allows(spec.scope):
                        with contextlib.suppress(Exception):
                            spec.builder(Context(runtime, principal, QueryParams("")))
            finally:
                with _LOCKS_GUARD:
                    _WARMING.pop(home, None)

        thread = threading.Thread(target=run, name="dashboard-warm", daemon=True)
        _WARMING[home] = thread
    thread.start()
    return thread


def stop_warming(timeout: float = 300.0) -> None:
    """End the warm-ups and background refreshes (at the server's shutdown): no page is started after this, and the one being built is
    waited for, so that no thread is inside the engine while the process exits."""
    _STOP.set()
    try:
        with _LOCKS_GUARD:
            threads = [*_WARMING.values(), *_REFRESHING.values()]
        for thread in threads:
            thread.join(timeout)
    finally:
        _STOP.clear()


def data_version(runtime: Runtime) -> tuple[int, ...]:
    """A value that changes whenever a warehouse dataset gains, loses or replaces a file: the modification
    times of the warehouse's folders two levels down (a file written or renamed in place changes its folder's).
    Off the local disk (object storage) there is no cheap equivalent: every call is then a new version."""
    root = Path(runtime.log.dataset_path("events")).parent
    if not root.is_dir():
        return (time.monotonic_ns(),)
    stamps = [root.stat().st_mtime_ns]
    with os.scandir(root) as datasets:
        for entry in datasets:
            if entry.is_dir():
                stamps.append(entry.stat().st_mtime_ns)
                with os.scandir(entry.path) as inside:
                    stamps.extend(e.stat().st_mtime_ns for e in inside if e.is_dir() or e.is_file())
    return (len(stamps), max(stamps), sum(stamps) & 0xFFFFFFFFFFFF)


Builder = Callable[[Context], view.Page]


@dataclass(frozen=True)
class PageSpec:
    name: str
    label: str
    scope: str
    builder: Builder


PAGES: dict[str, PageSpec] = {}
NAV_ORDER = ("overview", "channels", "stores", "customers", "segments", "journeys", "plan", "privacy")

router = APIRouter(include_in_schema=False)


def page(name: str, label: str, scope: str = roles.PROFILES_READ) -> Callable[[Builder], Builder]:
    """Register a page builder under /app/<name>, for principals with `scope`."""

    def register(builder: Builder) -> Builder:
        PAGES[name] = PageSpec(name, label, scope, builder)
        return builder

    return register


def viewer(runtime: Runtime, request: Request) -> Principal | None:
    """The signed-in user of the request's session cookie (None without a live session)."""
    token = request.cookies.get(sessions.COOKIE_NAME)
    return access.principal_for_session(runtime, token) if token else None


def _headers() -> dict[str, str]:
    return {
        "content-security-policy": CSP,
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
        "referrer-policy": "same-origin",
    }


def _nav(principal: Principal | None) -> list[dict[str, str]]:
    if principal is None:
        return []
    return [{"name": n, "label": PAGES[n].label} for n in NAV_ORDER if n in PAGES and principal.allows(PAGES[n].scope)]


def render(
    template: str, request: Request, principal: Principal | None, status: int = 200, **context: Any
) -> HTMLResponse:
    """A template rendered with the chrome every page has: navigation, the user, the CSRF token."""
    token = request.cookies.get(sessions.COOKIE_NAME)
    params = request.query_params

    def csv_query(table_id: str) -> str:
        return urlencode([(k, v) for k, v in params.multi_items() if k != "csv"] + [("csv", table_id)])

    html = ENV.get_template(template).render(
        csv_query=csv_query,
        user=principal,
        nav=_nav(principal),
        csrf=sessions.csrf_token(token) if token and principal else "",
        scripts=SCRIPTS,
        path=request.url.path,
        query=str(request.query_params),
        params=request.query_params,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=_headers())


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard address of ours, never another site."""
    if not target or not target.startswith("/app/") or target.startswith("//") or "\\" in target:
        return "/app/"
    return posixpath.normpath(target.split("?", 1)[0]) + (("?" + target.split("?", 1)[1]) if "?" in target else "")


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/app/login?next={quote(here, safe='')}", status_code=303, headers=_headers())


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/app/", status_code=307)


@router.get("/app/static/{folder}/{file}")
def static(
    folder: Annotated[str, PathParam(pattern=r"^(dashboard|vendor)$")],
    file: Annotated[str, PathParam(pattern=r"^[a-z0-9.\-]+$")],
) -> Response:
    name = f"{folder}/{file}"
    if name not in STATIC_FILES:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers={"cache-control": "public, max-age=3600"})


@router.get("/app/login", response_class=HTMLResponse)
def login_page(runtime: RuntimeDep, request: Request, next: str | None = None) -> Response:
    if viewer(runtime, request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render("dashboard/login.html", request, None, next=_safe_next(next), error=None, email="")


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > 16_384:
        raise InputError("the form is larger than 16 KB", field="body")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=100)
    return {k: v[-1] for k, v in parsed.items()}


@router.post("/app/login", response_class=HTMLResponse)
async def login(runtime: RuntimeDep, request: Request) -> Response:
    form = await _form(request)
    target = _safe_next(form.get("next"))
    try:
        started = access.login(runtime, form.get("email", ""), form.get("password", ""), origin=client_origin(request))
    except access.LoginRefused as exc:
        return render(
            "dashboard/login.html", request, None, status=401, next=target, error=str(exc), email=form.get("email", "")
        )
    secure = request.headers.get("x-forwarded-proto", request.url.scheme) == "https"
    response = RedirectResponse(target, status_code=303, headers=_headers())
    response.headers["set-cookie"] = sessions.cookie_header(started.token, secure=secure)
    signed_in = access.principal_for_session(runtime, started.token)
    if signed_in is not None and getattr(request.app.state, "dashboard_warm", True):
        warm(runtime, signed_in)
    return response


@router.post("/app/logout")
async def logout(runtime: RuntimeDep, request: Request) -> Response:
    form = await _form(request)
    token = request.cookies.get(sessions.COOKIE_NAME)
    if token and not sessions.csrf_ok(token, form.get("csrf")):
        return render(
            "dashboard/error.html",
            request,
            viewer(runtime, request),
            status=403,
            title="Not signed out",
            message="The form's CSRF token is missing or wrong; reload the page.",
        )
    if token:
        access.logout(runtime, token, origin=client_origin(request))
    secure = request.headers.get("x-forwarded-proto", request.url.scheme) == "https"
    response = RedirectResponse("/app/login", status_code=303, headers=_headers())
    response.headers["set-cookie"] = sessions.clearing_cookie_header(secure=secure)
    return response


@router.get("/app/", response_class=HTMLResponse)
def home(runtime: RuntimeDep, request: Request) -> Response:
    principal = viewer(runtime, request)
    if principal is None:
        return _to_login(request)
    first = _nav(principal)
    return RedirectResponse(f"/app/{first[0]['name']}" if first else "/app/login", status_code=303)


@router.get("/app/{name}", response_class=HTMLResponse)
def show(runtime: RuntimeDep, request: Request, name: Annotated[str, PathParam(pattern=r"^[a-z]+$")]) -> Response:
    spec = PAGES.get(name)
    principal = viewer(runtime, request)
    if principal is None:
        return _to_login(request)
    if spec is None:
        return render(
            "dashboard/error.html",
            request,
            principal,
            status=404,
            title="No such page",
            message=f"There is no page {name!r}.",
        )
    if not principal.allows(spec.scope):
        return render(
            "dashboard/error.html",
            request,
            principal,
            status=403,
            title="Not for your role",
            message=f"{spec.label} needs the scope {spec.scope!r}; your role is {principal.role}.",
        )
    started = time.perf_counter()
    try:
        stale = getattr(request.app.state, "dashboard_refresh_in_background", True)
        built = spec.builder(Context(runtime, principal, request.query_params, refresh_in_background=stale))
    except InputError as exc:
        return render(
            "dashboard/error.html",
            request,
            principal,
            status=400,
            title=f"{spec.label}: bad request",
            message=str(exc),
            field=exc.field,
        )
    wanted = request.query_params.get("csv")
    if wanted is not None:
        table = built.tables.get(wanted)
        if table is None:
            return render(
                "dashboard/error.html",
                request,
                principal,
                status=404,
                title="No such table",
                message=f"{spec.label} has no table {wanted!r}; it has {', '.join(built.tables) or 'none'}.",
            )
        return Response(
            table.csv(),
            media_type="text/csv; charset=utf-8",
            headers={**_headers(), "content-disposition": f'attachment; filename="{name}-{wanted}.csv"'},
        )
    response = render(built.template, request, principal, page=built, current=name, title=built.title, **built.context)
    # how long the page took to build and render on the server (bench/dashboard.py reads it)
    response.headers["server-timing"] = f"render;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


def _load_pages() -> None:
    """Import the page modules: each registers its builder with `page`."""
    from omniweave.shells.web import pages  # noqa: F401


_load_pages()
