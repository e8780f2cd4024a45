"""Audience exports: hashing vectors, consent, delta, device-id fallback, bad input, and the CLI (no plain PII)."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from omniweave.activate.audiences import (
    LAYOUTS,
    hash_email,
    hash_phone,
    make_key,
    normalize_phone,
    person_keys,
)
from omniweave.activate.service.audiences import export_audience
from omniweave.errors import InputError
from omniweave.profiles.service.build import build_profiles, write_identities
from omniweave.storage.eventlog import events_to_table
from omniweave.storage.warehouse import write_dataset
from tests.conftest import omniweave_cmd
from tests.segment_events import segment_event

NOW = datetime(2026, 6, 30, tzinfo=UTC)
SEGMENT = "bounced_visitors"
ALICE_EMAIL = "John.Doe@Example.COM"
BOB_PHONE = "+44 (0)20 7183 8750"
ERIN_DEVICE = "AECE52E7-03EE-455A-B3C4-E57283966239"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


ALICE_HASH = sha("john.doe@example.com")
BOB_GOOGLE = sha("+442071838750")
BOB_META = sha("442071838750")

IDENTITIES = [
    ("user_id", "u1", "P1"),
    ("email", ALICE_EMAIL, "P1"),  # advertising yes (trait)
    ("anonymous_id", "a2", "P2"),
    ("phone", BOB_PHONE, "P2"),  # yes (consent manager)
    ("user_id", "u3", "P3"),
    ("email", "carol@example.com", "P3"),  # a stated no
    ("user_id", "u4", "P4"),
    ("email", "dave@example.com", "P4"),  # never stated (NULL)
    ("anonymous_id", "a5", "P5"),
    ("device_id", ERIN_DEVICE, "P5"),  # yes, not identified
    ("anonymous_id", "offline:till:T9", "P5"),
    ("user_id", "u6", "P6"),
    ("phone", "not-a-phone", "P6"),  # yes, but the phone is junk
]


def _event(n: int, at: str, **fields: Any) -> dict[str, Any]:
    return segment_event(n, at, received_at=NOW, **fields)


def _consent(advertising: bool) -> dict[str, Any]:
    return {"consent": {"categoryPreferences": {"Advertising": advertising, "Analytics": True}}}


def world_events() -> list[dict[str, Any]]:
    return [
        _event(1, "2026-06-01T10:00:00Z", type="identify", user="u1", traits={"advertising_consent": True}),
        _event(2, "2026-06-02T10:00:00Z", type="page", anon="a2", context=_consent(True)),
        _event(3, "2026-06-03T10:00:00Z", type="identify", user="u3", traits={"advertising_consent": False}),
        _event(4, "2026-06-04T10:00:00Z", type="page", user="u4"),
        # Erin: visited twice, never bought, never identified; the consent manager says yes
        _event(5, "2026-06-05T10:00:00Z", type="page", anon="a5", context=_consent(True)),
        _event(6, "2026-06-06T10:00:00Z", type="screen", name="Cart", anon="a5"),
        _event(7, "2026-06-07T10:00:00Z", type="identify", user="u6", traits={"advertising_consent": "yes"}),
    ]


def write_members(runtime, segment_id: str, person_ids: list[str]) -> None:
    """The `segment_members` dataset as `omniweave segments evaluate` writes it (docs/segments.md)."""
    since = datetime(2026, 6, 10, tzinfo=UTC)
    write_dataset(
        runtime.log,
        "segment_members",
        pa.table(
            {
                "segment_id": pa.array([segment_id] * len(person_ids), pa.string()),
                "person_id": pa.array(person_ids, pa.string()),
                "since": pa.array([since] * len(person_ids), pa.timestamp("us", tz="UTC")),
            }
        ),
    )


@pytest.fixture
def world(runtime):
    runtime.log.append("events", events_to_table(world_events(), "test"), "world")
    write_identities(runtime, IDENTITIES)
    build_profiles(runtime, now=NOW, traits=[])
    return runtime


def read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def files_by_name(summary) -> dict[str, list[dict[str, str]]]:
    """The export's files by their name after `<platform>-<timestamp>` ("" for the main file)."""
    stem = Path(summary.files[0]).stem
    return {Path(f).stem[len(stem) :].lstrip("-"): read_csv(f) for f in summary.files}


# --- core: hashing vectors and platform forms ---------------------------------------------------


def test_hashing_vectors_from_the_issue():
    assert hash_email(" John.Doe@Example.COM ") == sha("john.doe@example.com")
    assert normalize_phone("+44 (0)20 7183 8750", "google") == "+442071838750"
    assert normalize_phone("+44 (0)20 7183 8750", "meta") == "442071838750"
    assert hash_phone("+44 (0)20 7183 8750", "google") == sha("+442071838750")
    assert hash_phone("+44 (0)20 7183 8750", "meta") == sha("442071838750")


def test_phone_forms_per_platform_and_default_region():
    # a national number takes the default region's country code
    assert normalize_phone("020 7183 8750", "google", "GB") == "+442071838750"
    assert normalize_phone("(415) 555-2671", "meta", "US") == "14155552671"
    assert normalize_phone("(415) 555-2671", "csv", "US") == "+14155552671"
    assert make_key("phone", BOB_PHONE, "google").cell == BOB_GOOGLE
    assert make_key("phone", BOB_PHONE, "meta").cell == BOB_META
    # device ids: the id itself for the platforms, its hash in our own csv; same identity either way
    google, own = make_key("device_id", ERIN_DEVICE, "google"), make_key("device_id", ERIN_DEVICE, "csv")
    assert google.cell == ERIN_DEVICE.lower() and own.cell == sha(ERIN_DEVICE.lower()) == google.hashed


def test_person_keys_prefer_contacts_and_count_bad_values():
    keys = person_keys(
        "google", {"email": [ALICE_EMAIL, "test@example.com"], "phone": ["12"], "device_id": [ERIN_DEVICE]}
    )
    assert [k.kind for k in keys.keys] == ["email"] and keys.invalid == 2 and not keys.by_device
    fallback = person_keys(
        "csv", {"phone": ["junk"], "device_id": [ERIN_DEVICE], "anonymous_id": ["a5", "offline:till:1"]}
    )
    assert sorted(k.kind for k in fallback.keys) == ["anonymous_id", "device_id"] and fallback.by_device
    assert fallback.invalid == 2  # the junk phone and the importer's offline id
    with pytest.raises(InputError, match="google, meta, csv"):
        person_keys("tiktok", {})


def test_layout_headers():
    assert [layout.header for layout in LAYOUTS["google"]] == [("Email", "Phone"), ("Mobile Device ID",)]
    assert LAYOUTS["meta"][0].header == ("email", "phone", "madid")
    assert LAYOUTS["csv"][0].header[0] == "person_id"


# --- the service on a small world -----------------------------------------------------------------


def test_google_export_consent_fallback_and_counts(world, tmp_path):
    write_members(world, SEGMENT, ["P1", "P2", "P3", "P4", "P5", "P6", "P9"])
    summary = export_audience(world, SEGMENT, "google", output=tmp_path / "out", now=NOW)
    assert (summary.members, summary.exported, summary.skipped_no_consent, summary.skipped_no_identifier) == (
        7,
        3,
        3,
        1,
    )
    assert (summary.by_device, summary.invalid_identifiers, summary.keys) == (1, 1, 3)
    files = files_by_name(summary)
    assert set(files) == {"", "adds", "removes", "mobile-ids", "mobile-ids-adds", "mobile-ids-removes"}
    assert files[""] == [{"Email": "", "Phone": BOB_GOOGLE}, {"Email": ALICE_HASH, "Phone": ""}]
    assert files["mobile-ids"] == [{"Mobile Device ID": ERIN_DEVICE.lower()}]
    assert files["adds"] == files[""] and files["removes"] == []
    # a stated no (Carol), never stated (Dave) and no profile at all (P9) never appear
    everything = "".join(Path(f).read_text() for f in summary.files)
    for person in ("carol@example.com", "dave@example.com"):
        assert sha(person) not in everything and person not in everything
    assert "john.doe" not in everything.lower()
    assert Path(summary.files[0]).parent == tmp_path / "out"


def test_meta_export_uses_digits_only_phones_and_madid(world, tmp_path):
    write_members(world, SEGMENT, ["P1", "P2", "P3", "P5"])
    summary = export_audience(world, SEGMENT, "meta", output=tmp_path, now=NOW)
    rows = files_by_name(summary)[""]
    assert rows == sorted(rows, key=lambda r: [r["email"], r["phone"], r["madid"]])
    assert {"email": "", "phone": BOB_META, "madid": ""} in rows
    assert {"email": ALICE_HASH, "phone": "", "madid": ""} in rows
    assert {"email": "", "phone": "", "madid": ERIN_DEVICE.lower()} in rows
    assert len(rows) == 3 and summary.skipped_no_consent == 1


def test_csv_export_names_persons_and_hashes_cookie_ids(world, tmp_path):
    write_members(world, SEGMENT, ["P1", "P5"])
    summary = export_audience(world, SEGMENT, "csv", output=tmp_path, now=NOW)
    rows = files_by_name(summary)[""]
    erin = [r for r in rows if r["person_id"] == "P5"]
    assert {r["device_id_sha256"] for r in erin} - {""} == {sha(ERIN_DEVICE.lower())}
    assert {r["anonymous_id_sha256"] for r in erin} - {""} == {sha("a5")}  # the till receipt is not a cookie
    assert [r["email_sha256"] for r in rows if r["person_id"] == "P1"] == [ALICE_HASH]
    assert "a5" not in {v for r in rows for v in r.values()}


def test_delta_adds_and_removes_across_exports(world, tmp_path):
    write_members(world, SEGMENT, ["P1", "P5"])
    first = export_audience(world, SEGMENT, "google", output=tmp_path, now=NOW)
    assert (first.adds, first.removes) == (2, 0)

    write_members(world, SEGMENT, ["P2", "P5"])  # Alice leaves, Bob enters, Erin stays
    second = export_audience(world, SEGMENT, "google", output=tmp_path, now=NOW + timedelta(days=1))
    files = files_by_name(second)
    assert (second.adds, second.removes) == (1, 1)
    assert files["adds"] == [{"Email": "", "Phone": BOB_GOOGLE}]
    assert files["removes"] == [{"Email": ALICE_HASH, "Phone": ""}]
    assert files["mobile-ids-adds"] == [] and files["mobile-ids-removes"] == []
    assert files["mobile-ids"] == [{"Mobile Device ID": ERIN_DEVICE.lower()}]

    # a Meta export of the same segment has its own history: everything is an add
    meta = export_audience(world, SEGMENT, "meta", output=tmp_path, now=NOW + timedelta(days=1))
    assert (meta.adds, meta.removes) == (2, 0)

    # Erin leaves: the platforms need the device id itself to remove it, recovered from her profile
    write_members(world, SEGMENT, ["P2"])
    third = export_audience(world, SEGMENT, "google", output=tmp_path, now=NOW + timedelta(days=2))
    assert (third.adds, third.removes, third.removes_unresolved) == (0, 1, 0)
    assert files_by_name(third)["mobile-ids-removes"] == [{"Mobile Device ID": ERIN_DEVICE.lower()}]

    # the kept set holds hashes only, one row per (segment, platform, key)
    kept = world.warehouse().sql("select platform, kind, hashed_key from audience_exports order by platform, kind")
    assert kept.to_pylist() == [
        {"platform": "google", "kind": "phone", "hashed_key": BOB_GOOGLE},
        {"platform": "meta", "kind": "device_id", "hashed_key": sha(ERIN_DEVICE.lower())},
        {"platform": "meta", "kind": "phone", "hashed_key": BOB_META},
    ]


def test_consent_withdrawn_removes_the_person(world, tmp_path):
    write_members(world, SEGMENT, ["P1"])
    assert export_audience(world, SEGMENT, "meta", output=tmp_path, now=NOW).adds == 1
    withdrawn = _event(
        8, "2026-06-20T10:00:00Z", event="Segment Consent Preference Updated", user="u1", context=_consent(False)
    )
    world.log.append("events", events_to_table([withdrawn], "test"), "withdrawn")
    build_profiles(world, now=NOW, traits=[])
    later = export_audience(world, SEGMENT, "meta", output=tmp_path, now=NOW + timedelta(hours=1))
    assert (later.exported, later.skipped_no_consent, later.adds, later.removes) == (0, 1, 0, 1)
    assert files_by_name(later)["removes"] == [{"email": ALICE_HASH, "phone": "", "madid": ""}]


def test_a_segment_file_without_members_exports_an_empty_list(world, tmp_path):
    write_members(world, "other", ["P1"])
    (world.settings.home_path / "segments").mkdir()
    (world.settings.home_path / "segments" / "quiet.yaml").write_text(
        "id: quiet_ones\nname: Quiet\nwhere: {trait: orders, gt: 1000000}\n"
    )
    summary = export_audience(world, "quiet_ones", "csv", output=tmp_path, now=NOW)
    assert (summary.members, summary.keys) == (0, 0)
    assert files_by_name(summary)[""] == []


@pytest.mark.parametrize(
    ("segment", "platform", "words"),
    [
        (SEGMENT, "tiktok", "expected one of google, meta, csv"),
        ("nobody_here", "google", "unknown segment 'nobody_here'.*expected one of bounced_visitors"),
        ("../etc", "google", "not a segment id"),
    ],
)
def test_bad_input_says_what_was_expected(world, tmp_path, segment, platform, words):
    write_members(world, SEGMENT, ["P1"])
    with pytest.raises(InputError, match=words):
        export_audience(world, segment, platform, output=tmp_path)


def test_no_segment_members_yet(world, tmp_path):
    with pytest.raises(InputError, match="no segment_members dataset yet: run `omniweave segments evaluate`"):
        export_audience(world, SEGMENT, "google", output=tmp_path)


# --- the command line -----------------------------------------------------------------------------


def test_cli_export_writes_no_plain_pii(world, tmp_path):
    write_members(world, SEGMENT, ["P1", "P2", "P3", "P5", "P6"])
    env = {**os.environ, "OMNIWEAVE_HOME": str(world.settings.home_path.resolve())}
    run = subprocess.run(
        omniweave_cmd("audiences", "export", SEGMENT, "--to", "google"),
        env=env,
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "5 members, 3 exported" in run.stdout and "1 skipped for no advertising consent" in run.stdout
    assert "1 skipped for no identifier" in run.stdout and "3 adds, 0 removes" in run.stdout
    folder = world.settings.home_path.resolve() / "exports" / "audiences" / SEGMENT
    written = sorted(folder.glob("google-*.csv"))
    assert len(written) == 6 and all(str(p) in run.stdout for p in written)
    texts = [run.stdout, run.stderr, *(p.read_text() for p in written)]
    assert ALICE_HASH in texts[2]
    for text in texts:
        low = text.lower()
        assert "john.doe" not in low and "example.com" not in low and "7183" not in low and "not-a-phone" not in low

    bad = subprocess.run(
        omniweave_cmd("audiences", "export", SEGMENT, "--to", "myspace"),
        env=env,
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "expected one of google, meta, csv" in bad.stderr
