"""Sign-up forms over HTTP: the hosted page, the embeddable snippet, confirmation links, and `/v1/forms`.

Public (a visitor, no key):

    GET  /f/{form}               the hosted page (server-rendered, works without JavaScript); `?placement=`
                                 (web, embed, kiosk, poster, receipt, shelf, tv), `?lang=`, `?kiosk=1` (a tablet
                                 at the till: no autocomplete, no remembered visitor, back to an empty form after
                                 the thank-you), `?fragment=1` (just the form, for the snippet; CORS)
    POST /f/{form}               a submit (application/x-www-form-urlencoded, or JSON for API clients):
                                 303 to the thank-you page; 400 with the form and every problem; 429 with
                                 Retry-After (rate limits); the honeypot gets the thank-you too
    GET  /f/{form}/thanks        the thank-you page (kiosk: refreshes back to the form)
    GET  /f/confirm/{token}      a page with the confirm button (link scanners prefetch GETs: nothing changes)
    POST /f/confirm/{token}      the confirmation: the consent is recorded now (200; 404 invalid; 410 expired)
    GET  /f/static/{file}        embed.js and forms.css (vendored, served by us: no third-party requests)

The snippet's requests are cross-origin: they get `Access-Control-Allow-Origin` only for the form's
`allowed_origins`, and a POST whose Origin is neither ours nor allowed is refused (403). Every page says
`frame-ancestors` for the same origins (the iframe variant).

With a key or session:

    GET    /v1/forms                        the forms with their sign-ups by status (profiles:read)
    GET    /v1/forms/{name}                 one definition (profiles:read)
    POST   /v1/forms/validate               a definition checked: every problem at once (config:manage)
    PUT    /v1/forms/{name}                 write a definition (config:manage); 400 with every problem
    DELETE /v1/forms/{name}                 remove it (config:manage); sign-ups and evidence stay
    GET    /v1/forms/{name}/qr              the QR code of a placement, PNG or SVG (profiles:read)
    GET    /v1/forms/evidence/{reference}   what a consent given through a form rests on (privacy:admin)

Handlers call forms/service.py only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote, urlencode

import orjson
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel

from omniweave.activate.service.messages import load_brand
from omniweave.errors import InputError
from omniweave.forms import service as F
from omniweave.forms.abuse import FormLimiter, Limits
from omniweave.forms.definition import PLACEMENTS, FormDef, FormInvalid, parse_form
from omniweave.forms.submission import FieldError
from omniweave.forms.wording import Wording, pick_locale, wording
from omniweave.privacy.roles import CONFIG_MANAGE, PRIVACY_ADMIN, PROFILES_READ, Principal
from omniweave.privacy.service.audit import record
from omniweave.runtime import Runtime
from omniweave.shells.api.deps import RuntimeDep, client_origin, require
from omniweave.shells.api.errors import ApiError
from omniweave.shells.api.schemas import ErrorBody

router = APIRouter(tags=["forms"])
WEB = Path(__file__).parents[1] / "web"
STATIC = WEB / "static" / "forms"
_ENV = Environment(loader=FileSystemLoader(str(WEB / "templates")), autoescape=select_autoescape(["html"]))
NAME = r"^[a-z0-9][a-z0-9_-]{0,59}$"
KIOSK_RESET_SECONDS = 8
MAX_BODY = 64 * 1024
_INPUT_TYPES = {"email": "email", "phone": "tel", "birthday": "date"}
_AUTOCOMPLETE = {
    "email": "email",
    "phone": "tel",
    "first_name": "given-name",
    "last_name": "family-name",
    "name": "name",
    "birthday": "bday",
    "postcode": "postal-code",
}
_STATUS = {"invalid": 400, "too_fast": 400, "expired": 400}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "no such form"}}
_KEYED: dict[int | str, dict[str, Any]] = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
_HTML_OR_JSON: dict[str, Any] = {
    "text/html": {},
    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}},
}


def limiter_of(request: Request) -> FormLimiter:
    """The serve process's rate limiter (forms/abuse.py: in memory, per IP and per form)."""
    state = request.app.state
    limiter = getattr(state, "form_limiter", None)
    if limiter is None:
        limiter = state.form_limiter = FormLimiter(Limits(), time.monotonic)
    return limiter


def _form(runtime: Runtime, name: str) -> FormDef:
    try:
        return F.load_form(runtime.settings, name)
    except FormInvalid as exc:
        raise ApiError(503, "form", f"form {name!r} has problems; `omniweave forms validate` lists them") from exc
    except InputError as exc:
        raise ApiError(404, "form", exc.reason) from None


def _origin_of(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}".lower()


def _cors(request: Request, form: FormDef) -> dict[str, str]:
    """CORS headers for a request from one of the form's allowed origins (none otherwise)."""
    origin = (request.headers.get("origin") or "").lower()
    if origin and origin in form.allowed_origins:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {"Vary": "Origin"}


def _page_headers(runtime: Runtime, form: FormDef | None) -> dict[str, str]:
    ancestors = " ".join(("'self'", *(form.allowed_origins if form else ())))
    return {
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
            f"frame-ancestors {ancestors}; base-uri 'none'"
        ),
        "Cache-Control": "no-store",
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
    }


def _anonymous_from(request: Request, kiosk: bool) -> str:
    """The visitor's analytics.js anonymous id (`?ajs_aid=`, else the cookie), never in kiosk mode."""
    if kiosk:
        return ""
    value = request.query_params.get("ajs_aid") or request.cookies.get("ajs_anonymous_id") or ""
    value = unquote(value).strip().strip('"')
    return value if len(value) <= 200 and value.isprintable() else ""


def _action(form: FormDef, placement: str, locale: str, kiosk: bool) -> str:
    query = {"placement": placement, "lang": locale}
    if kiosk:
        query["kiosk"] = "1"
    return f"/f/{form.name}?{urlencode(query)}"


def _message(words: Wording, error: FieldError) -> str:
    return words.t(f"errors.{error.code}", **{"max": 0, "purpose": "", **error.params}) or error.code


def _field_views(form: FormDef, words: Wording, values: dict[str, Any], errors: dict[str, str]) -> list[dict[str, Any]]:
    views = []
    for f in form.fields:
        fid = f"{form.name}-{f.name}"
        help_text = form.text(f.help, words.locale) or words.t(f"hints.{f.type}")
        described = " ".join(x for x, on in ((f"{fid}-help", help_text), (f"{fid}-error", f.name in errors)) if on)
        raw = values.get(f.name)
        views.append(
            {
                "id": fid,
                "name": f.name,
                "type": f.type,
                "label": form.text(f.label, words.locale) or words.label(f.name, f.type),
                "help": help_text,
                "required": f.required,
                "options": f.options,
                "value": (raw[-1] if isinstance(raw, list) and raw else raw) or "",
                "chosen": raw if isinstance(raw, list) else ([raw] if raw else []),
                "input_type": _INPUT_TYPES.get(f.type, "text"),
                "autocomplete": _AUTOCOMPLETE.get(f.name) or _AUTOCOMPLETE.get(f.type),
                "inputmode": "tel" if f.type == "phone" else "email" if f.type == "email" else None,
                "max_length": f.max_length,
                "error": errors.get(f.name),
                "describedby": described,
            }
        )
    return views


def render_form(
    runtime: Runtime,
    form: FormDef,
    *,
    locale: str,
    placement: str,
    kiosk: bool,
    fragment: bool,
    anonymous_id: str,
    values: dict[str, Any] | None = None,
    problems: tuple[FieldError, ...] = (),
) -> str:
    """The form's HTML (a whole page, or the fragment the snippet shows), with the answers and problems."""
    words = wording(locale)
    values = values or {}
    errors = {e.field: _message(words, e) for e in problems}
    fields = _field_views(form, words, values, errors)
    ticked = values.get("consent") or []
    ticked = ticked if isinstance(ticked, list) else [ticked]
    purposes = [
        {
            "id": f"{form.name}-consent-{p.name}",
            "name": p.name,
            "wording": form.text(p.wording, locale),
            "checked": p.name in ticked,
            "error": errors.get(f"consent_{p.name}"),
        }
        for p in form.purposes
    ]
    labels = {f["name"]: (f["label"], f["id"]) for f in fields}
    labels.update({f"consent_{p['name']}": (p["wording"], p["id"]) for p in purposes})
    summary = []
    for e in problems:
        label, target = labels.get(e.field, ("", None))
        summary.append({"label": label, "target": target, "message": errors[e.field]})
    context = {
        "form": form,
        "title": form.text(form.title, locale),
        "intro": form.text(form.intro, locale),
        "words": words,
        "locale": locale,
        "kiosk": kiosk,
        "fields": fields,
        "purposes": purposes,
        "errors": summary,
        "action": _action(form, placement, locale, kiosk),
        "started": F.render_stamp(runtime, form.name),
        "anonymous_id": anonymous_id,
        "placement": placement,
        "brand": F.brand_of(runtime, form),
        "body": "forms/form.html",
        "refresh_url": None,
    }
    return _ENV.get_template("forms/form.html" if fragment else "forms/page.html").render(context)


def _placement(value: str | None, kiosk: bool) -> str:
    if kiosk and not value:
        return "kiosk"
    return value if value in PLACEMENTS else "web"


# --- the public pages ----------------------------------------------------------------------------------


@router.get(
    "/f/static/{file}",
    response_class=FileResponse,
    responses={200: {"content": {"text/javascript": {}, "text/css": {}}, "description": "embed.js or forms.css"}},
    summary="The embeddable snippet and the forms' stylesheet",
)
def static_file(file: Annotated[str, PathParam(pattern=r"^(embed\.js|forms\.css)$")]) -> FileResponse:
    """The vendored snippet and the stylesheet."""
    media = "text/javascript" if file.endswith(".js") else "text/css"
    return FileResponse(
        STATIC / file,
        media_type=media,
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
    )


@router.get(
    "/f/confirm/{token}",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}, "description": "the page with the confirm button"}},
    summary="A sign-up's confirmation page",
)
def confirm_page(runtime: RuntimeDep, token: str, lang: str | None = None) -> HTMLResponse:
    """The confirm button (a GET changes nothing: mail scanners follow links)."""
    locale = lang if lang in ("en", "de") else "en"
    return _confirm_response(runtime, "ask", locale, f"/f/confirm/{token}", 200)


def _confirm_response(
    runtime: Runtime, state: str, locale: str, action: str, status: int, result: F.ConfirmResult | None = None
) -> HTMLResponse:
    form = None
    if result is not None and result.form:
        try:
            form = F.load_form(runtime.settings, result.form)
        except InputError:
            form = None
    words = wording(locale)
    message = form.text(form.confirmed, locale) if form is not None and form.confirmed else words.t("confirmed_default")
    brand = F.brand_of(runtime, form) if form is not None else load_brand(runtime.settings)
    page = _ENV.get_template("forms/page.html").render(
        {
            "locale": locale,
            "title": words.t("confirmed_title"),
            "brand": brand,
            "words": words,
            "state": state,
            "action": action,
            "message": message,
            "coupon": result.coupon if result else None,
            "kiosk": False,
            "body": "forms/confirm.html",
            "refresh_url": None,
        }
    )
    return HTMLResponse(page, status_code=status, headers=_page_headers(runtime, None))


@router.post(
    "/f/confirm/{token}",
    response_class=HTMLResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "confirmed (or confirmed before)"},
        404: {"content": _HTML_OR_JSON, "description": "unknown or forged link (a page saying so)"},
        410: {"content": _HTML_OR_JSON, "description": "the sign-up expired (a page saying so)"},
    },
    summary="Confirm a sign-up (double opt-in)",
)
def confirm_signup(runtime: RuntimeDep, request: Request, token: str) -> HTMLResponse:
    """Record the consent of the sign-up the link names, with its evidence (forms/service.py)."""
    result = F.confirm(runtime, token, ip=request.client.host if request.client else None)
    status = {"confirmed": 200, "already": 200, "expired": 410}.get(result.status, 404)
    return _confirm_response(runtime, result.status, result.locale, f"/f/confirm/{token}", status, result)


@router.get(
    "/f/{form}",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}, "description": "the form"}, **_NOT_FOUND},
    summary="A hosted sign-up form",
)
def form_page(
    runtime: RuntimeDep,
    request: Request,
    form: Annotated[str, PathParam(pattern=NAME)],
    placement: Annotated[str | None, Query(max_length=20)] = None,
    lang: Annotated[str | None, Query(max_length=10)] = None,
    kiosk: bool = False,
    fragment: bool = False,
) -> HTMLResponse:
    """The form, server-rendered; `fragment` is what the embeddable snippet shows (CORS for allowed origins)."""
    found = _form(runtime, form)
    locale = pick_locale(found, lang, request.headers.get("accept-language"))
    html = render_form(
        runtime,
        found,
        locale=locale,
        placement=_placement(placement, kiosk),
        kiosk=kiosk,
        fragment=fragment,
        anonymous_id=_anonymous_from(request, kiosk),
    )
    headers = _page_headers(runtime, found)
    if fragment:
        headers.update(_cors(request, found))
    return HTMLResponse(html, headers=headers)


@router.options("/f/{form}", include_in_schema=False)
def form_preflight(runtime: RuntimeDep, request: Request, form: Annotated[str, PathParam(pattern=NAME)]) -> Response:
    """CORS preflight of the snippet (allowed origins only)."""
    found = _form(runtime, form)
    headers = _cors(request, found)
    if "Access-Control-Allow-Origin" in headers:
        headers.update({"Access-Control-Allow-Methods": "GET, POST", "Access-Control-Allow-Headers": "Content-Type"})
    return Response(status_code=204, headers=headers)


async def _answers(request: Request) -> tuple[dict[str, Any], bool]:
    """The posted answers (form-encoded or JSON) and whether the client asked for JSON."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, "body", f"a sign-up is at most {MAX_BODY // 1024} KiB")
    kind = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if kind == "application/json":
        try:
            data = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError:
            raise ApiError(400, "body", "expected a JSON object of answers") from None
        if not isinstance(data, dict):
            raise ApiError(400, "body", "expected a JSON object of answers")
        return data, True
    if kind not in ("", "application/x-www-form-urlencoded"):
        raise ApiError(415, "content-type", "expected application/x-www-form-urlencoded or application/json")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "body", "expected form fields in UTF-8") from None
    answers: dict[str, Any] = {
        k: (v if len(v) > 1 or k in ("consent", "interests") else v[0]) for k, v in parsed.items()
    }
    for f in ("consent",):
        if isinstance(answers.get(f), str):
            answers[f] = [answers[f]]
    return answers, "application/json" in (request.headers.get("accept") or "")


@router.post(
    "/f/{form}",
    responses={
        200: {
            "content": {"text/html": {}, "application/json": {}},
            "description": "accepted (the snippet's fragment, or JSON)",
        },
        303: {"description": "accepted: to the thank-you page"},
        400: {"content": _HTML_OR_JSON, "description": "the form again with every problem (JSON: the problems)"},
        403: {"model": ErrorBody, "description": "posted from an origin the form does not allow"},
        429: {"content": _HTML_OR_JSON, "description": "too many sign-ups from this IP or on this form"},
        **_NOT_FOUND,
    },
    summary="Submit a sign-up form",
)
async def submit_form(
    runtime: RuntimeDep,
    request: Request,
    form: Annotated[str, PathParam(pattern=NAME)],
    placement: Annotated[str | None, Query(max_length=20)] = None,
    lang: Annotated[str | None, Query(max_length=10)] = None,
    kiosk: bool = False,
    fragment: bool = False,
) -> Response:
    """Take a submit (forms/service.py `submit`) and answer as the module docstring says."""
    from starlette.concurrency import run_in_threadpool

    found = await run_in_threadpool(_form, runtime, form)
    cors = _cors(request, found)
    origin = (request.headers.get("origin") or "").lower()
    if origin and origin != "null" and origin != _origin_of(request) and origin not in found.allowed_origins:
        raise ApiError(403, "Origin", f"{origin} may not post to form {form!r}; add it to the form's allowed_origins")
    answers, wants_json = await _answers(request)
    placement = _placement(placement or str(answers.get("placement") or "") or None, kiosk)
    locale = pick_locale(found, lang or str(answers.get("lang") or "") or None, request.headers.get("accept-language"))
    ip = request.client.host if request.client else "unknown"
    wait = limiter_of(request).check(ip, found.name)
    words = wording(locale)
    if wait:
        message = words.t("errors.rate_limited")
        headers = {"Retry-After": str(wait), **cors}
        if wants_json:
            return JSONResponse({"status": "rate_limited", "message": message}, status_code=429, headers=headers)
        context = {
            "form": found,
            "words": words,
            "locale": locale,
            "kind": "rate_limited",
            "title": found.text(found.title, locale),
            "message": message,
            "again_url": None if fragment else _action(found, placement, locale, kiosk),
            "brand": F.brand_of(runtime, found),
            "body": "forms/message.html",
            "refresh_url": None,
            "kiosk": kiosk,
        }
        page = _ENV.get_template("forms/message.html" if fragment else "forms/page.html").render(context)
        return HTMLResponse(page, status_code=429, headers={**_page_headers(runtime, found), **headers})
    anonymous_id = "" if kiosk else str(answers.get("anonymous_id") or _anonymous_from(request, kiosk))
    submit = F.SubmitRequest(
        found.name,
        answers,
        placement=placement,
        locale=locale,
        ip=ip,
        user_agent=request.headers.get("user-agent"),
        anonymous_id=anonymous_id or None,
        page_url=request.headers.get("referer"),
    )
    result = await run_in_threadpool(F.submit, runtime, submit)
    if wants_json:
        body: dict[str, Any] = {"status": "accepted" if result.looks_accepted else result.status}
        if result.looks_accepted:
            body["message"] = found.text(found.thank_you, locale)
        else:
            body["errors"] = [{"field": e.field, "code": e.code, "message": _message(words, e)} for e in result.errors]
        return JSONResponse(body, status_code=_STATUS.get(result.status, 200), headers=cors)
    if result.looks_accepted:
        if fragment:
            return HTMLResponse(_thanks(runtime, found, locale, placement, kiosk, fragment=True), headers=cors)
        query = {"lang": locale, **({"kiosk": "1", "placement": placement} if kiosk else {})}
        return RedirectResponse(f"/f/{found.name}/thanks?{urlencode(query)}", status_code=303, headers=cors)
    values = {k: v for k, v in answers.items() if k not in ("started", "website")}
    page = render_form(
        runtime,
        found,
        locale=locale,
        placement=placement,
        kiosk=kiosk,
        fragment=fragment,
        anonymous_id=anonymous_id,
        values=values,
        problems=result.errors,
    )
    return HTMLResponse(page, status_code=400, headers={**_page_headers(runtime, found), **cors})


def _thanks(runtime: Runtime, form: FormDef, locale: str, placement: str, kiosk: bool, *, fragment: bool) -> str:
    words = wording(locale)
    again = _action(form, placement, locale, kiosk)
    context = {
        "form": form,
        "words": words,
        "locale": locale,
        "kiosk": kiosk,
        "title": words.t("thanks_title"),
        "message": form.text(form.thank_you, locale),
        "again_url": again,
        "brand": F.brand_of(runtime, form),
        "body": "forms/thanks.html",
        "refresh_url": again if kiosk else None,
        "refresh_seconds": KIOSK_RESET_SECONDS,
    }
    return _ENV.get_template("forms/thanks.html" if fragment else "forms/page.html").render(context)


@router.get(
    "/f/{form}/thanks",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}, "description": "the thank-you page"}, **_NOT_FOUND},
    summary="A form's thank-you page",
)
def thanks_page(
    runtime: RuntimeDep,
    request: Request,
    form: Annotated[str, PathParam(pattern=NAME)],
    lang: Annotated[str | None, Query(max_length=10)] = None,
    kiosk: bool = False,
    placement: Annotated[str | None, Query(max_length=20)] = None,
) -> HTMLResponse:
    """The thank-you words; in kiosk mode the page goes back to an empty form after a few seconds."""
    found = _form(runtime, form)
    locale = pick_locale(found, lang, request.headers.get("accept-language"))
    html = _thanks(runtime, found, locale, _placement(placement, kiosk), kiosk, fragment=False)
    return HTMLResponse(html, headers=_page_headers(runtime, found))


# --- /v1/forms -----------------------------------------------------------------------------------------


class Problem(BaseModel):
    path: str
    message: str


class Validation(BaseModel):
    valid: bool
    form: str | None
    problems: list[Problem]


class FormListed(BaseModel):
    name: str
    title: str
    fields: list[str]
    purposes: list[str]
    signups: dict[str, int]


def _validation(exc: FormInvalid | None, name: str | None) -> Validation:
    problems = [Problem(path=p, message=m) for p, m in (exc.problems if exc else [])]
    return Validation(valid=exc is None, form=name, problems=problems)


@router.get(
    "/v1/forms",
    response_model=list[FormListed],
    dependencies=[require(PROFILES_READ)],
    responses=_KEYED,
    summary="The forms",
)
def list_forms(runtime: RuntimeDep) -> list[dict[str, Any]]:
    """Every valid form of the project with its sign-ups by status."""
    return [s.to_dict() for s in F.list_forms(runtime)]


@router.post(
    "/v1/forms/validate",
    response_model=Validation,
    dependencies=[require(CONFIG_MANAGE)],
    responses=_KEYED,
    summary="Check a form",
)
def validate_form(runtime: RuntimeDep, document: dict[str, Any]) -> Validation:
    """Every problem of a form definition at once (200 whether it is valid or not)."""
    try:
        form = parse_form(document, "<body>", purposes=runtime.settings.privacy.purposes)
    except FormInvalid as exc:
        return _validation(exc, str(document.get("name")) if document.get("name") else None)
    return _validation(None, form.name)


@router.get(
    "/v1/forms/evidence/{reference}",
    dependencies=[require(PRIVACY_ADMIN)],
    responses={404: {"model": ErrorBody}, **_KEYED},
    summary="The evidence of a consent given through a form",
)
def form_evidence(runtime: RuntimeDep, reference: Annotated[str, PathParam(max_length=80)]) -> dict[str, Any]:
    """The words, times, IPs and confirmation behind the consent statements with this reference."""
    try:
        return F.evidence(runtime, reference).to_dict()
    except InputError as exc:
        raise ApiError(404, "reference", exc.reason) from None


@router.get(
    "/v1/forms/{name}",
    dependencies=[require(PROFILES_READ)],
    responses={**_NOT_FOUND, **_KEYED},
    summary="A form's definition",
)
def get_form(runtime: RuntimeDep, name: Annotated[str, PathParam(pattern=NAME)]) -> dict[str, Any]:
    """The checked definition (as `PUT` takes it)."""
    return _form(runtime, name).to_json()


@router.put(
    "/v1/forms/{name}",
    responses={400: {"model": ErrorBody}, **_KEYED},
    summary="Write a form's definition",
)
def put_form(
    runtime: RuntimeDep,
    request: Request,
    name: Annotated[str, PathParam(pattern=NAME)],
    document: dict[str, Any],
    principal: Annotated[Principal, require(CONFIG_MANAGE)],
) -> dict[str, Any]:
    """Check and write `forms/NAME.yaml`; 400 listing every problem, nothing written. Recorded in the audit log."""
    saved = F.save_form(runtime, document, name=name).to_json()
    record(runtime, principal.actor, "config.change", f"form:{name}", {"op": "save"}, client_origin(request))
    return saved


@router.delete(
    "/v1/forms/{name}",
    responses={**_NOT_FOUND, **_KEYED},
    summary="Remove a form",
)
def delete_form(
    runtime: RuntimeDep,
    request: Request,
    name: Annotated[str, PathParam(pattern=NAME)],
    principal: Annotated[Principal, require(CONFIG_MANAGE)],
) -> dict[str, Any]:
    """Remove the form's file (its sign-ups and their evidence stay). Recorded in the audit log."""
    if not F.delete_form(runtime.settings, name):
        raise ApiError(404, "form", f"no form named {name!r} in the project")
    record(runtime, principal.actor, "config.change", f"form:{name}", {"op": "delete"}, client_origin(request))
    return {"deleted": name}


@router.get(
    "/v1/forms/{name}/qr",
    dependencies=[require(PROFILES_READ)],
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}}, **_NOT_FOUND, **_KEYED},
    summary="A form's QR code for a placement",
)
def form_qr(
    runtime: RuntimeDep,
    name: Annotated[str, PathParam(pattern=NAME)],
    placement: Annotated[str, Query(pattern=f"^({'|'.join(PLACEMENTS)})$")] = "poster",
    format: Annotated[str, Query(pattern="^(png|svg)$")] = "png",
) -> Response:
    """The QR code that opens the form with its placement recorded."""
    _form(runtime, name)
    code = F.form_qr(runtime, name, placement, format)
    media = "image/png" if code.format == "png" else "image/svg+xml"
    return Response(code.image, media_type=media, headers={"X-Form-Url": code.url})
