"""Data-subject requests reach the sign-up forms' table (`form_signups`, docs/privacy.md, docs/forms.md).

A small project whose customers sign up through a form (e-mail confirmed by link, SMS by keyword, with the
IP of the submit and of the confirmation kept as evidence). One of them, Zinnia, signs up twice: once
confirmed and loaded into the event log, once still pending with a new page visitor id whose events are
still in the inbox. Her export holds her sign-ups with their evidence; after her deletion no byte of her
e-mail, phone, IPs, visitor ids or name is left under the home, the receipt lists `ops:form_signups`, the
forms' counts by form and status keep her rows (anonymised) and the e-mail sign-up KPI of the others is
what their own sign-ups make it. A suppressed person's new sign-up is answered like anyone's and stores
nothing; retention expires pending sign-ups and anonymises those older than its days.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from omniweave.collect.loader import load_all
from omniweave.forms import service as F
from omniweave.identity.service.resolve import resolve
from omniweave.measure.service.kpis import kpi_table
from omniweave.privacy.service.requests import submit, write_bundle
from omniweave.profiles.service.build import build_profiles
from omniweave.runtime import Runtime
from omniweave.settings import PrivacySettings, Settings
from omniweave.storage.ops.tables import consent_history, form_signups
from tests.privacy.world import files_containing

FORM: dict[str, Any] = {
    "name": "club",
    "locales": ["en"],
    "title": {"en": "Join the club"},
    "fields": [
        {"name": "email", "type": "email", "required": True},
        {"name": "phone", "type": "phone"},
        {"name": "first_name", "type": "name"},
    ],
    "purposes": [
        {"name": "email", "wording": {"en": "E-mail me club news"}, "confirm": "email"},
        {"name": "sms", "wording": {"en": "Text me club offers"}, "confirm": "sms"},
        {"name": "personalisation", "wording": {"en": "Tailor offers to me"}, "confirm": "email"},
    ],
    "thank_you": {"en": "Thanks!"},
    "min_seconds": 0,
    "confirm_hours": 48,
}
HER = {
    "email": "Zinnia.Quellbrook@example.org",
    "phone": "07911 123789",
    "phone_e164": "+447911123789",
    "first_name": "Zinnia",
    "anonymous_id": "anon-zinnia-4f1c9e",
    "second_anonymous_id": "anon-zinnia-second-77d0",
    "ip": "203.0.113.77",
    "confirm_ip": "198.51.100.23",
    "second_ip": "203.0.113.78",
}
HER_NEEDLES = [
    HER[k].lower().encode()
    for k in ("email", "phone_e164", "first_name", "anonymous_id", "second_anonymous_id", "ip", "confirm_ip")
] + [b"07911123789", b"07911 123789", b"quellbrook", HER["second_ip"].encode()]
OTHERS = [  # email, placement, confirmed
    ("olga@example.net", "web", True),
    ("piet@example.net", "receipt", True),
    ("quinn@example.net", "receipt", True),
    ("rosa@example.net", "kiosk", True),
    ("sami@example.net", "poster", False),
]


def _home(tmp_path: Path, **privacy: Any) -> Settings:
    home = tmp_path / "home"
    (home / "forms").mkdir(parents=True)
    (home / "forms" / "club.yaml").write_text(yaml.safe_dump(FORM), encoding="utf-8")
    return Settings(home=str(home)).with_overrides(privacy=PrivacySettings(blocklist_refresh_seconds=0.0, **privacy))


def _her_first_signup(runtime: Runtime, now: float) -> F.SubmitResult:
    """Zinnia's sign-up from a poster, both purposes' confirmations done from another IP."""
    answers = {
        "email": HER["email"],
        "phone": HER["phone"],
        "first_name": HER["first_name"],
        "consent": ["email", "sms", "personalisation"],
    }
    request = F.SubmitRequest(
        "club",
        answers,
        placement="poster",
        ip=HER["ip"],
        user_agent="Mozilla/5.0 (Zinnia's phone)",
        anonymous_id=HER["anonymous_id"],
        check_stamp=False,
    )
    result = F.submit(runtime, request, channels=F.fake_channels(runtime), now=now)
    assert result.status == "accepted" and sorted(result.pending) == ["email", "sms"]
    by_mode = _modes(runtime, result.signups)
    assert F.confirm(runtime, F.confirm_token(runtime, by_mode["email"]), ip=HER["confirm_ip"]).status == "confirmed"
    assert F.confirm_by_keyword(runtime, HER["phone_e164"], "YES", ip=HER["confirm_ip"]).status == "confirmed"
    return result


def _her_pending_signup(runtime: Runtime, now: float) -> F.SubmitResult:
    """Her second sign-up, on another device, never confirmed."""
    request = F.SubmitRequest(
        "club",
        {"email": HER["email"].lower(), "consent": ["email"]},
        placement="web",
        ip=HER["second_ip"],
        anonymous_id=HER["second_anonymous_id"],
        check_stamp=False,
    )
    result = F.submit(runtime, request, channels=F.fake_channels(runtime), now=now)
    assert result.status == "accepted" and result.pending == ("email",)
    return result


def _modes(runtime: Runtime, ids: tuple[str, ...]) -> dict[str, str]:
    with runtime.store.engine.connect() as conn:
        rows = conn.execute(sa.select(form_signups.c.id, form_signups.c.purposes).where(form_signups.c.id.in_(ids)))
        return {orjson.loads(r.purposes)[0]["confirm"]: r.id for r in rows}


def _others(runtime: Runtime, now: float) -> None:
    for i, (email, placement, confirmed) in enumerate(OTHERS):
        answers = {"email": email, "first_name": f"Other{i}", "consent": ["email"]}
        result, done = F.sign_up(
            runtime,
            "club",
            answers,
            placement=placement,
            anonymous_id=f"anon-other-{i:02d}",
            confirm_now=confirmed,
            channels=F.fake_channels(runtime),
            now=now,
        )
        assert result.status == "accepted" and [c.status for c in done] == (["confirmed"] if confirmed else [])


def _counts(runtime: Runtime) -> dict[tuple[str, str, str], int]:
    with runtime.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(form_signups.c.form, form_signups.c.placement, form_signups.c.status, sa.func.count()).group_by(
                form_signups.c.form, form_signups.c.placement, form_signups.c.status
            )
        ).all()
    return {(f, p, s): int(n) for f, p, s, n in rows}


def _signups_by_placement(runtime: Runtime) -> dict[str, float]:
    rows = kpi_table(runtime, period="month", by="placement", kpis=["email_signups"]).to_pylist()
    out: Counter[str] = Counter()
    for r in rows:
        out[r["dimension_value"]] += r["value"]
    return dict(out)


def _parquet_rows_containing(home: Path, needles: list[bytes]) -> dict[str, int]:
    hits = {}
    for path in home.rglob("*.parquet"):
        rows = [orjson.dumps(r, default=str).lower() for r in pq.read_table(path).to_pylist()]
        n = sum(1 for row in rows if any(needle in row for needle in needles))
        if n:
            hits[str(path.relative_to(home))] = n
    return hits


@pytest.fixture
def signed_up(tmp_path: Path):
    """The project after the sign-ups: hers and the others' loaded and resolved, her second one in the inbox."""
    settings = _home(tmp_path)
    runtime = Runtime(settings)
    now = time.time() - 3600
    _her_first_signup(runtime, now)
    _others(runtime, now)
    load_all(runtime.store, runtime.log)
    resolve(runtime)
    build_profiles(runtime)
    _her_pending_signup(runtime, now + 60)  # after the load: its events are still in the inbox
    yield runtime
    runtime.close()


def test_an_export_holds_her_signups_with_their_evidence(signed_up: Runtime, tmp_path: Path) -> None:
    runtime = signed_up
    result = submit(runtime, "export", "email:" + HER["email"])
    assert result.status == "done" and result.bundle is not None
    mine = result.bundle["form_signups"]
    assert sorted((s["placement"], s["status"]) for s in mine) == [
        ("poster", "confirmed"),
        ("poster", "confirmed"),
        ("web", "pending"),
    ]
    assert {s["email"] for s in mine} == {HER["email"].lower()}
    confirmed = [s for s in mine if s["status"] == "confirmed"]
    assert {s["confirmed_via"] for s in confirmed} == {"email", "sms"}
    assert all((s["submitted_ip"], s["confirmed_ip"]) == (HER["ip"], HER["confirm_ip"]) for s in confirmed)
    words = {p["name"]: p["wording"] for s in mine for p in s["purposes"]}
    assert words == {
        name: FORM["purposes"][i]["wording"]["en"] for i, name in enumerate(("email", "sms", "personalisation"))
    }
    # each consent statement of hers points at a sign-up of the bundle
    references = {s["reference"] for s in mine}
    assert {c["reference"] for c in result.bundle["consent"]} <= references
    assert {c["purpose"] for c in result.bundle["consent"]} == {"email", "sms", "personalisation"}
    assert {r.target: r.count for r in result.receipts}["export:form_signups"] == 3
    # the bundle as a file holds her evidence and nobody else's sign-up
    written = write_bundle(result.bundle, tmp_path / "zinnia.json").read_bytes()
    assert HER["confirm_ip"].encode() in written and b"Text me club offers" in written
    assert not any(e.encode() in written for e, _, _ in OTHERS)


def test_deleting_her_removes_every_byte_and_keeps_the_counts(signed_up: Runtime) -> None:
    runtime = signed_up
    home = Path(runtime.settings.home)
    assert files_containing(home, HER_NEEDLES), "the project holds her before the deletion"
    counts_before = _counts(runtime)
    kpi_before = _signups_by_placement(runtime)
    # the KPI counts each person's first e-mail opt-in where it was made: hers on the poster, the others' own
    expected_others = Counter(p for _, p, confirmed in OTHERS if confirmed)
    assert kpi_before == {k: float(v) for k, v in (expected_others + Counter({"poster": 1})).items()}

    result = submit(runtime, "delete", "email:" + HER["email"].upper())
    assert result.status == "done", result
    receipts = {r.target: r for r in result.receipts}
    assert receipts["ops:form_signups"].action == "anonymised"
    assert receipts["ops:form_signups"].count == 3
    assert "1 pending ones expired" in receipts["ops:form_signups"].detail
    assert receipts["ops:inbox"].count > 0  # her second sign-up's events, found by its visitor id

    assert files_containing(home, HER_NEEDLES) == {}
    assert _parquet_rows_containing(home, HER_NEEDLES) == {}
    with runtime.store.engine.connect() as conn:
        left = conn.execute(sa.select(consent_history)).all()
    assert len(left) == sum(1 for _, _, confirmed in OTHERS if confirmed)  # theirs only: one e-mail yes each

    # the forms' counts keep her rows: the pending one is now expired, nothing else moved
    counts_after = _counts(runtime)
    moved = Counter(counts_before)
    moved[("club", "web", "pending")] -= 1
    moved[("club", "web", "expired")] += 1
    assert counts_after == {k: v for k, v in moved.items() if v}
    assert [f.to_dict()["signups"] for f in F.list_forms(runtime) if f.name == "club"] == [
        {"pending": 1, "confirmed": 6, "expired": 1}
    ]
    # the KPI reads the event log: her sign-up left with her events, the others' are as they made them
    load_all(runtime.store, runtime.log)
    assert _signups_by_placement(runtime) == {k: float(v) for k, v in expected_others.items()}


def test_a_suppressed_person_is_answered_like_anyone_and_nothing_is_stored(tmp_path: Path) -> None:
    runtime = Runtime(_home(tmp_path))
    try:
        pending = _her_pending_signup(runtime, time.time())
        [signup_id] = pending.signups
        inbox_before = len(list(runtime.store.read(after=0)))
        result = submit(runtime, "suppress", "email:" + HER["email"])
        receipts = {r.target: r for r in result.receipts}
        assert (receipts["ops:form_signups"].action, receipts["ops:form_signups"].count) == ("expired", 1)
        # her confirmation link, followed after the suppression, records nothing
        assert F.confirm(runtime, F.confirm_token(runtime, signup_id), ip=HER["confirm_ip"]).status == "expired"
        with runtime.store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(consent_history)).scalar_one() == 0
            rows_before = conn.execute(sa.select(sa.func.count()).select_from(form_signups)).scalar_one()
        again, confirmed = F.sign_up(
            runtime, "club", {"email": HER["email"], "consent": ["email"]}, channels=F.fake_channels(runtime)
        )
        assert again.status == "ignored" and again.looks_accepted and confirmed == []
        assert again.to_dict()["errors"] == []
        with runtime.store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(form_signups)).scalar_one() == rows_before
        assert len(list(runtime.store.read(after=0))) == inbox_before
        # someone else signs up as usual
        other, _ = F.sign_up(
            runtime, "club", {"email": "olga@example.net", "consent": ["email"]}, channels=F.fake_channels(runtime)
        )
        assert other.status == "accepted"
    finally:
        runtime.close()


def test_retention_expires_pending_signups_and_anonymises_old_ones(tmp_path: Path) -> None:
    runtime = Runtime(_home(tmp_path, retention_days=(("form_signups", 30),)))
    try:
        old, recent = time.time() - 40 * 86400, time.time() - 5 * 86400
        F.sign_up(
            runtime,
            "club",
            {"email": "old@example.net", "consent": ["email"]},
            placement="receipt",
            channels=F.fake_channels(runtime),
            now=old,
        )
        F.sign_up(
            runtime,
            "club",
            {"email": "new@example.net", "consent": ["email"]},
            placement="web",
            channels=F.fake_channels(runtime),
            now=recent,
        )
        F.sign_up(
            runtime,
            "club",
            {"email": "late@example.net", "consent": ["email"]},
            placement="web",
            confirm_now=False,
            channels=F.fake_channels(runtime),
            now=recent,
        )
        before = _counts(runtime)
        result = submit(runtime, "retention")
        receipt = {r.target: r for r in result.receipts}["ops:form_signups"]
        assert receipt.count == 2, receipt
        assert "1 pending sign-ups past their time expired" in receipt.detail
        with runtime.store.engine.connect() as conn:
            rows = {r.placement + "/" + r.status: r for r in conn.execute(sa.select(form_signups))}
        assert rows["receipt/confirmed"].email is None and rows["receipt/confirmed"].confirmed_at is not None
        assert rows["web/confirmed"].email == "new@example.net"
        assert rows["web/expired"].email is None
        assert sum(before.values()) == sum(_counts(runtime).values()) == 3
        again = submit(runtime, "retention")
        assert {r.target: r.count for r in again.receipts}["ops:form_signups"] == 0
    finally:
        runtime.close()
