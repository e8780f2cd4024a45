"""Data-subject requests as jobs: export, delete, suppress, unsuppress — and retention.

`submit(runtime, kind, identifier)` resolves the person (every identifier of theirs), writes a job row
(`pending`, with what it acts on) and runs it; `run(runtime, request_id)` runs or resumes one, so a job
interrupted by a crash or a restart is finished by `resume_pending` (or `omniweave privacy resume`).
Every step is safe to repeat: a deletion run twice removes nothing the second time. Each step leaves a
receipt per target; a repeated step that finds nothing keeps the receipt of the run that did the work.

A deletion blocks the person's identifiers at the collector first (so nothing new arrives meanwhile),
then removes inbox rows, rewrites the warehouse (events and every derived dataset), anonymises or
removes their operational rows, cleans the files under the home and compacts the store. When it is
done the job row keeps its receipts and no identifier: `work` is cleared.
"""

from __future__ import annotations

import logging
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from omniweave.channels.port import address_key
from omniweave.errors import InputError
from omniweave.privacy.masking import mask
from omniweave.privacy.requests import KINDS, Receipt, RequestResult
from omniweave.privacy.service import scrub
from omniweave.privacy.service.people import find_subject, with_signup_visitors
from omniweave.privacy.subjects import Subject, blocked_digests, needles, subject_digests
from omniweave.runtime import Runtime
from omniweave.storage.ops import forms_privacy
from omniweave.storage.ops.ledger import Ledger
from omniweave.storage.ops.tables import consent_history, coupons, sends
from omniweave.storage.ops.tables.privacy import privacy_blocked, privacy_receipts, privacy_requests

log = logging.getLogger(__name__)

DELETE_STEPS = ("block", "inbox", "warehouse", "operational", "files", "compact")
EXPORT_SECTIONS = ("events", "profiles", "segment_members", "identities")


def _now() -> float:
    return time.time()


def submit(
    runtime: Runtime,
    kind: str,
    identifier: str = "",
    *,
    requested_by: str | None = None,
    run_now: bool = True,
    keep_bundle: bool = False,
) -> RequestResult:
    """Create a request about the person `identifier` names (none for `retention`) and run it — or, with
    `run_now=False`, leave it `pending` for a job runner (`run_jobs`: the API's worker thread, `omniweave
    privacy run-jobs`). `keep_bundle`: an export also writes its bundle under the home (`bundle_path`), for
    a client that fetches it later."""
    if kind not in KINDS:
        raise InputError(f"unknown request kind {kind!r}; expected one of {', '.join(KINDS)}", field="kind")
    if kind == "retention":
        subject = Subject((), ())
        label = "retention"
    else:
        subject = with_signup_visitors(runtime, find_subject(runtime, identifier))
        label = mask(identifier.partition(":")[2] or identifier)
    found = needles(subject, runtime.settings.default_region)
    work = {
        "person_ids": list(subject.person_ids),
        "identifiers": [list(i) for i in subject.identifiers],
        "needles": list(found),
        "done": [],
        "keep_bundle": keep_bundle,
    }
    request_id = f"dsr_{uuid.uuid4().hex[:16]}"
    now = _now()
    with runtime.store.engine.begin() as conn:
        conn.execute(
            privacy_requests.insert().values(
                id=request_id,
                kind=kind,
                status="running" if run_now else "pending",  # run here: no job runner may take it meanwhile
                subject=label,
                person_id=subject.person_id,
                work=orjson.dumps(work),
                requested_by=requested_by,
                created_at=now,
                updated_at=now,
            )
        )
    if not run_now:
        return get(runtime, request_id)
    return run(runtime, request_id)


def _set(runtime: Runtime, request_id: str, **values: Any) -> None:
    with runtime.store.engine.begin() as conn:
        if runtime.store.dialect == "sqlite":  # a cleared `work` leaves no identifier in a free page
            conn.exec_driver_sql("PRAGMA secure_delete=ON")
        conn.execute(
            privacy_requests.update().where(privacy_requests.c.id == request_id).values(updated_at=_now(), **values)
        )


def _receipt(runtime: Runtime, request_id: str, receipt: Receipt) -> None:
    """Record a receipt; a repeated step's empty receipt does not replace one that counted something."""
    with runtime.store.engine.begin() as conn:
        old = conn.execute(
            sa.select(privacy_receipts.c.count).where(
                (privacy_receipts.c.request_id == request_id) & (privacy_receipts.c.target == receipt.target)
            )
        ).first()
        values = {
            "action": receipt.action,
            "count": receipt.count,
            "detail": receipt.detail[:2000],
            "at": receipt.at or _now(),
        }
        if old is None:
            conn.execute(privacy_receipts.insert().values(request_id=request_id, target=receipt.target, **values))
        elif receipt.count > 0 or old[0] == 0:
            conn.execute(
                privacy_receipts.update()
                .where((privacy_receipts.c.request_id == request_id) & (privacy_receipts.c.target == receipt.target))
                .values(**values)
            )


def run(runtime: Runtime, request_id: str) -> RequestResult:
    """Run (or resume) a request; a done one is returned as it is. A failure is recorded on the job
    (status `failed`, the error) and raised; running it again continues."""
    with runtime.store.engine.connect() as conn:
        row = conn.execute(sa.select(privacy_requests).where(privacy_requests.c.id == request_id)).first()
    if row is None:
        raise InputError(f"no privacy request {request_id!r}", field="request")
    if row.status == "done":
        return get(runtime, request_id)
    work = orjson.loads(row.work) if row.work else {"person_ids": [], "identifiers": [], "needles": [], "done": []}
    subject = Subject(tuple(work["person_ids"]), tuple((k, v) for k, v in work["identifiers"]))
    found = tuple(work["needles"])
    _set(runtime, request_id, status="running", error=None)
    bundle = None
    try:
        if row.kind == "delete":
            _delete(runtime, request_id, subject, found, work)
        elif row.kind == "suppress":
            _block(runtime, request_id, subject)
            _receipt(runtime, request_id, _expire_signups(runtime, found))
        elif row.kind == "unsuppress":
            _unblock(runtime, request_id, subject)
        elif row.kind == "export":
            bundle = export_bundle(runtime, subject, found)
            for section in ("identifiers", *EXPORT_SECTIONS, "consent", "messages", "coupons", "form_signups"):
                _receipt(runtime, request_id, Receipt(f"export:{section}", "written", len(bundle[section]), "", _now()))
            if work.get("keep_bundle"):
                kept = write_bundle(bundle, bundle_path(runtime, request_id), one_line=True)
                rel = kept.relative_to(runtime.settings.home_path)
                _receipt(runtime, request_id, Receipt(f"file:{rel}", "written", 1, "the bundle, for the API", _now()))
        elif row.kind == "retention":
            days_of = dict(runtime.settings.privacy.retention_days)
            for dataset, days in runtime.settings.privacy.retention_days:
                if dataset != SIGNUPS:
                    _receipt(runtime, request_id, scrub.expire_dataset(runtime, dataset, days))
            signups = _retain_signups(runtime, days_of.get(SIGNUPS))
            if signups is not None:
                _receipt(runtime, request_id, signups)
    except Exception as exc:
        _set(runtime, request_id, status="failed", error=f"{type(exc).__name__}: {mask_error(exc, found)}"[:2000])
        raise
    _set(runtime, request_id, status="done", finished_at=_now(), work=None)
    if row.kind == "delete":
        _set(runtime, request_id, person_id=None)
        scrub.compact_store(runtime)  # the cleared `work` leaves no bytes behind either
    result = get(runtime, request_id)
    if bundle is not None:
        return RequestResult(**{**result.__dict__, "bundle": bundle})
    return result


SIGNUPS = "form_signups"
"""The `[privacy] retention_days` key for the forms' sign-ups (an operational table, not a dataset)."""


def _expire_signups(runtime: Runtime, found: tuple[str, ...]) -> Receipt:
    """A suppressed person's pending form sign-ups expired: a confirmation link followed later records no
    consent and sends no event (which would carry the identifiers the collector now refuses)."""
    with runtime.store.engine.begin() as conn:
        expired = forms_privacy.expire_pending(conn, found)
    detail = "pending sign-ups expired (personal columns cleared): a late confirmation confirms nothing"
    return Receipt(f"ops:{SIGNUPS}", "expired", expired, detail, _now())


def _retain_signups(runtime: Runtime, days: int | None) -> Receipt | None:
    """Retention of `form_signups`: pending sign-ups past their time expire (as `omniweave forms expire`);
    with `retention_days.form_signups`, every sign-up older than that many days keeps no personal data.
    None (no receipt) when the table has no retention of its own and nothing was due."""
    now = _now()
    with runtime.store.engine.begin() as conn:
        expired = forms_privacy.expire_due(conn, now)
        old = forms_privacy.anonymise_before(conn, now - days * 86400.0) if days else 0
    if not days and not expired:
        return None
    detail = f"{expired} pending sign-ups past their time expired"
    if days:
        detail += f"; {old} submitted more than {days} days ago anonymised (counts kept)"
    return Receipt(f"ops:{SIGNUPS}", "anonymised", expired + old, detail, now)


def mask_error(exc: BaseException, found: tuple[str, ...]) -> str:
    """An error's text with every needle in it masked (a job row must not keep an identifier)."""
    text = str(exc)
    for needle in found:
        if len(needle) >= 4:
            text = text.replace(needle, mask(needle))
    return text


def _step(runtime: Runtime, request_id: str, work: dict[str, Any], name: str) -> bool:
    """Whether step `name` still has to run (a resumed job skips those already done)."""
    return name not in work["done"]


def _done(runtime: Runtime, request_id: str, work: dict[str, Any], name: str) -> None:
    work["done"].append(name)
    _set(runtime, request_id, work=orjson.dumps(work))


def _after_propagation(runtime: Runtime, then: Any) -> Any:
    """Wait until every collector process has re-read the blocklist (its refresh time, plus a margin), then run
    `then`: an event of the person accepted just before a collector saw the block lands in the inbox before the
    scrub starts, and is removed with the rest — never after it."""
    time.sleep(runtime.settings.privacy.blocklist_refresh_seconds + 0.5)
    return then()


def _delete(runtime: Runtime, request_id: str, subject: Subject, found: tuple[str, ...], work: dict[str, Any]) -> None:
    steps = {
        "block": lambda: [_block(runtime, request_id, subject, record=False)],
        "inbox": lambda: _after_propagation(runtime, lambda: scrub.scrub_inbox(runtime, found)),
        "warehouse": lambda: scrub.scrub_warehouse(runtime, found),
        "operational": lambda: scrub.scrub_operational(
            runtime, subject.person_ids, found, subject_digests(subject.identifiers)
        ),
        "files": lambda: scrub.scrub_files(runtime, found),
        "compact": lambda: [scrub.compact_store(runtime)],
    }
    for name in DELETE_STEPS:
        if not _step(runtime, request_id, work, name):
            continue
        receipts = steps[name]()
        if not receipts:
            receipts = [Receipt(f"{name}", "none", 0, "nothing of the person found here", _now())]
        for receipt in receipts:
            _receipt(runtime, request_id, receipt)
        _done(runtime, request_id, work, name)


def _block(runtime: Runtime, request_id: str, subject: Subject, record: bool = True) -> Receipt:
    """Add the person's identifier digests to the collector's blocklist."""
    digests = blocked_digests(subject)
    with runtime.store.engine.begin() as conn:
        have = set(
            conn.execute(sa.select(privacy_blocked.c.digest).where(privacy_blocked.c.digest.in_(digests))).scalars()
        )
        new = [d for d in digests if d not in have]
        if new:
            conn.execute(
                privacy_blocked.insert(), [{"digest": d, "request_id": request_id, "created_at": _now()} for d in new]
            )
    refresh = runtime.settings.privacy.blocklist_refresh_seconds
    receipt = Receipt(
        "collector:blocklist",
        "blocked",
        len(digests),
        f"{len(digests)} identifiers refused at ingest within {refresh:g} s by every collector process",
        _now(),
    )
    if record:  # a suppression (a deletion removes the addresses instead): no message goes to them either
        _receipt(runtime, request_id, receipt)
        ledger = Ledger(runtime.store.engine)
        added = sum(
            ledger.suppress(channel, address, PRIVACY_REASON, request_id) for channel, address in _addresses(subject)
        )
        detail = "the policy engine's suppression rule holds every message to them"
        _receipt(runtime, request_id, Receipt("ops:suppressions", "blocked", added, detail, _now()))
    return receipt


PRIVACY_REASON = "privacy"
"""The reason a privacy suppression gives its addresses on the channels' suppression list."""


def _addresses(subject: Subject) -> list[tuple[str, str]]:
    """(channel, address) of the person's e-mails (email) and phones (sms, whatsapp)."""
    out = []
    for kind, value in subject.identifiers:
        channels = ("email",) if kind == "email" else ("sms", "whatsapp") if kind == "phone" else ()
        out += [(channel, address_key(channel, value)) for channel in channels]
    return out


def _unblock(runtime: Runtime, request_id: str, subject: Subject) -> None:
    digests = blocked_digests(subject)
    with runtime.store.engine.begin() as conn:
        gone = conn.execute(privacy_blocked.delete().where(privacy_blocked.c.digest.in_(digests))).rowcount
    _receipt(runtime, request_id, Receipt("collector:blocklist", "unblocked", int(gone or 0), "", _now()))
    ledger = Ledger(runtime.store.engine)
    lifted = sum(ledger.unsuppress(channel, address, [PRIVACY_REASON]) for channel, address in _addresses(subject))
    _receipt(runtime, request_id, Receipt("ops:suppressions", "unblocked", lifted, "privacy suppressions only", _now()))


def export_bundle(runtime: Runtime, subject: Subject, found: tuple[str, ...]) -> dict[str, Any]:
    """Everything omniweave holds about the person, as one JSON document."""
    pids = list(subject.person_ids) or ["(no person)"]
    warehouse_rows = {name: scrub.matching_rows(runtime, name, found) for name in EXPORT_SECTIONS}
    with runtime.store.engine.connect() as conn:
        consent = conn.execute(
            sa.select(consent_history)
            .where(consent_history.c.subject.in_(subject_digests(subject.identifiers)))
            .order_by(consent_history.c.stated_at)
        ).all()
        messages = conn.execute(
            sa.select(sends).where(sends.c.person_id.in_(pids) | sa.func.lower(sends.c.to_address).in_(list(found)))
        ).all()
        codes = conn.execute(
            sa.select(coupons).where(coupons.c.person_id.in_(pids) | coupons.c.redeemed_by.in_(pids))
        ).all()
        signups = forms_privacy.signups_of(conn, found)

    def plain(row: Any) -> dict[str, Any]:
        out = {}
        for key, value in dict(row._mapping).items():
            if isinstance(value, bytes):
                try:
                    value = orjson.loads(value)
                except orjson.JSONDecodeError:
                    value = value.decode("utf-8", "replace")
            out[key] = value
        return out

    return {
        "person_ids": list(subject.person_ids),
        "identifiers": [{"kind": k, "value": v} for k, v in subject.identifiers],
        "profiles": warehouse_rows["profiles"],
        "identities": warehouse_rows["identities"],
        "segment_members": warehouse_rows["segment_members"],
        "events": warehouse_rows["events"],
        "consent": [{k: v for k, v in plain(r).items() if k not in ("id", "subject")} for r in consent],
        "messages": [plain(r) for r in messages],
        "coupons": [plain(r) for r in codes],
        "form_signups": signups,
        "exported_at": _now(),
    }


def get(runtime: Runtime, request_id: str) -> RequestResult:
    """A request with its receipts."""
    with runtime.store.engine.connect() as conn:
        row = conn.execute(sa.select(privacy_requests).where(privacy_requests.c.id == request_id)).first()
        if row is None:
            raise InputError(f"no privacy request {request_id!r}", field="request")
        receipts = conn.execute(
            sa.select(privacy_receipts)
            .where(privacy_receipts.c.request_id == request_id)
            .order_by(privacy_receipts.c.at)
        ).all()
    return RequestResult(
        row.id,
        row.kind,
        row.status,
        row.subject,
        row.person_id,
        row.created_at,
        row.finished_at,
        row.error,
        tuple(Receipt(r.target, r.action, int(r._mapping["count"]), r.detail or "", r.at) for r in receipts),
    )


def list_requests(runtime: Runtime, limit: int = 100) -> list[RequestResult]:
    """The newest requests first (without their receipts)."""
    with runtime.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(privacy_requests).order_by(privacy_requests.c.created_at.desc()).limit(limit)
        ).all()
    return [
        RequestResult(r.id, r.kind, r.status, r.subject, r.person_id, r.created_at, r.finished_at, r.error)
        for r in rows
    ]


def resume_pending(runtime: Runtime) -> list[RequestResult]:
    """Run every request left pending, running (a crash) or failed; returns them as they ended."""
    with runtime.store.engine.connect() as conn:
        ids = (
            conn.execute(
                sa.select(privacy_requests.c.id)
                .where(privacy_requests.c.status.in_(("pending", "running", "failed")))
                .order_by(privacy_requests.c.created_at)
            )
            .scalars()
            .all()
        )
    return [run(runtime, request_id) for request_id in ids]


def write_bundle(bundle: dict[str, Any], path: str | Path, *, one_line: bool = False) -> Path:
    """Write an export: `.json` as one document; otherwise a ZIP with `person.json` (identifiers, profile,
    consent, messages, coupons, segment memberships) and `events.jsonl` (one event a line). `one_line`: the
    JSON on one line (a bundle kept under the home: a later deletion of the person empties it whole)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
    if not one_line:
        options |= orjson.OPT_INDENT_2
    if path.suffix.lower() == ".json":
        temp = path.with_name(f".tmp-{path.name}")
        try:
            temp.write_bytes(orjson.dumps(bundle, option=options, default=str))
            temp.replace(path)
        finally:
            temp.unlink(missing_ok=True)
        return path
    person = {k: v for k, v in bundle.items() if k != "events"}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("person.json", orjson.dumps(person, option=options, default=str))
        lines = b"\n".join(orjson.dumps(e, option=orjson.OPT_NON_STR_KEYS, default=str) for e in bundle["events"])
        archive.writestr("events.jsonl", lines + (b"\n" if lines else b""))
    return path


# --- jobs -----------------------------------------------------------------------------------------


def bundle_path(runtime: Runtime, request_id: str) -> Path:
    """Where an export submitted with `keep_bundle` keeps its bundle (one line of JSON)."""
    return runtime.settings.home_path / "privacy" / "exports" / f"{request_id}.json"


def claim(runtime: Runtime, request_id: str, statuses: tuple[str, ...] = ("pending",)) -> bool:
    """Mark a request `running` if it is still in one of `statuses`; False if another runner took it."""
    with runtime.store.engine.begin() as conn:
        taken = conn.execute(
            privacy_requests.update()
            .where((privacy_requests.c.id == request_id) & privacy_requests.c.status.in_(statuses))
            .values(status="running", updated_at=_now())
        )
    return taken.rowcount == 1


def waiting(runtime: Runtime, statuses: tuple[str, ...] = ("pending",)) -> list[str]:
    """The ids of the requests in `statuses`, oldest first."""
    with runtime.store.engine.connect() as conn:
        found = conn.execute(
            sa.select(privacy_requests.c.id)
            .where(privacy_requests.c.status.in_(statuses))
            .order_by(privacy_requests.c.created_at)
        )
        return list(found.scalars().all())


def run_jobs(
    runtime: Runtime, *, interrupted: bool = False, stop: Callable[[], bool] = lambda: False
) -> list[RequestResult]:
    """Run the pending requests one by one until none is left (or `stop()`); `interrupted` also takes those
    left `running` by a runner that died (call it once, when a runner starts). Each is claimed first, so two
    runners never start the same pending request; a failure is recorded on its request (status `failed`,
    the error masked) and the next one runs."""
    ended: list[RequestResult] = []
    left_running = waiting(runtime, ("running",)) if interrupted else []
    while not stop():
        ids = waiting(runtime)
        taken = left_running.pop(0) if left_running else next((i for i in ids if claim(runtime, i)), None)
        if taken is None:
            return ended
        try:
            ended.append(run(runtime, taken))
        except Exception:  # noqa: BLE001 - recorded on the request by run(); the next one still runs
            log.warning("privacy request %s failed; its error is on the request (omniweave privacy requests)", taken)
            ended.append(get(runtime, taken))
    return ended
