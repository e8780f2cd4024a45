"""The policy rules (activate/policy.py): property tests across DST changes, and a table of exact reasons."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omniweave.activate.policy import DAYS, Facts, SendIntent, Verdict, consent_problem, decide, next_window_open
from omniweave.errors import ConfigError, InputError
from omniweave.settings import ClassPolicy, FrequencyCap, PolicySettings, load_settings

ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu")
HOUR = 3600.0
DAY = 86400.0


def _utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


# instants near every DST change of 2026 in the four zones (and plain days), so that examples hit them
DST_CHANGES = [
    _utc(2026, 3, 29, 1),  # Berlin spring forward (01:00 UTC)
    _utc(2026, 10, 25, 1),  # Berlin fall back
    _utc(2026, 3, 8, 7),  # New York spring forward (02:00 EST)
    _utc(2026, 11, 1, 6),  # New York fall back (02:00 EDT)
    _utc(2026, 4, 4, 15),  # Lord Howe: 02:00 +11 -> 01:30 +10:30 (5 April local)
    _utc(2026, 10, 3, 15, 30),  # Lord Howe: 02:00 +10:30 -> 02:30 +11 (4 October local)
    _utc(2026, 6, 15, 12),  # no change anywhere (Kathmandu never changes)
]
instants = st.builds(
    lambda base, shift: base + shift, st.sampled_from(DST_CHANGES), st.integers(-3 * 86400, 3 * 86400)
).map(float)
clock = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59]))
days = st.sets(st.sampled_from(DAYS), min_size=1).map(lambda s: tuple(d for d in DAYS if d in s))


def local_in(at: float, zone: str, start: str, end: str, days: tuple[str, ...]) -> bool:
    """An independent reading of "the local time is in [start, end) on one of days" (a window ending
    before it starts runs past midnight and belongs to its first day; start == end: the whole day)."""
    local = dt.datetime.fromtimestamp(at, zoneinfo.ZoneInfo(zone))
    minutes = local.hour * 60 + local.minute + local.second / 60
    s, e = (int(x[:2]) * 60 + int(x[3:]) for x in (start, end))
    today, yesterday = DAYS[local.weekday()], DAYS[(local.weekday() - 1) % 7]
    if s == e:
        return today in days
    if s < e:
        return today in days and s <= minutes < e
    return (minutes >= s and today in days) or (minutes < e and yesterday in days)


def scan_closed(lo: float, hi: float, zone: str, start: str, end: str, days: tuple[str, ...]) -> bool:
    """True when no whole minute in [lo, hi) is in the window (offsets and window edges fall on whole minutes)."""
    t = float(-(-int(lo) // 60) * 60)
    while t < hi:
        if local_in(t, zone, start, end, days):
            return False
        t += 60
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(now=instants, zone=st.sampled_from(ZONES), start=clock, end=clock, days=days)
def test_next_window_open_is_the_first_instant_in_the_window(now, zone, start, end, days):
    opens = next_window_open(now, zone, start, end, days)
    assert opens >= now
    assert local_in(opens, zone, start, end, days)
    assert scan_closed(now, opens, zone, start, end, days)


def test_next_window_open_over_a_skipped_and_a_repeated_hour():
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    # 02:30 does not exist on 29 March 2026 in Berlin: the window opens when the clock jumps to 03:00
    opens = next_window_open(_utc(2026, 3, 28, 22), "Europe/Berlin", "02:30", "04:00")
    assert dt.datetime.fromtimestamp(opens, berlin).isoformat() == "2026-03-29T03:00:00+02:00"
    # 02:30 happens twice on 25 October 2026: the first one (CEST)
    opens = next_window_open(_utc(2026, 10, 24, 22), "Europe/Berlin", "02:30", "04:00")
    assert dt.datetime.fromtimestamp(opens, berlin).isoformat() == "2026-10-25T02:30:00+02:00"
    # Lord Howe moves by 30 minutes: 02:00 -> 02:30 on 4 October 2026; a window from 02:10 opens at 02:30
    howe = zoneinfo.ZoneInfo("Australia/Lord_Howe")
    opens = next_window_open(_utc(2026, 10, 3, 12), "Australia/Lord_Howe", "02:10", "03:00")
    assert dt.datetime.fromtimestamp(opens, howe).isoformat() == "2026-10-04T02:30:00+11:00"
    # Kathmandu is +05:45 all year
    opens = next_window_open(_utc(2026, 6, 15, 0), "Asia/Kathmandu", "08:00", "21:00", ["mon"])
    assert dt.datetime.fromtimestamp(opens, zoneinfo.ZoneInfo("Asia/Kathmandu")).isoformat() == (
        "2026-06-15T08:00:00+05:45"
    )


def test_next_window_open_rejects_bad_input():
    with pytest.raises(InputError, match="unknown time zone 'Mars/Base'"):
        next_window_open(0.0, "Mars/Base", "08:00", "20:00")
    with pytest.raises(InputError, match="start must be a local time HH:MM"):
        next_window_open(0.0, "UTC", "8am", "20:00")
    with pytest.raises(InputError, match="expected names among mon"):
        next_window_open(0.0, "UTC", "08:00", "20:00", ["monday"])


# --- decide: properties -------------------------------------------------------------------------------

CONSENTED = {"consent_email": True, "consent_sms": True, "consent_whatsapp": True, "consent_push": True}
classes = st.sampled_from(["promotional", "reminder", "transactional"])
quiet = st.one_of(st.none(), st.tuples(clock, clock).filter(lambda q: q[0] != q[1]))


def rules_with(quiet_hours=("21:00", "08:00"), caps=(), **classes: ClassPolicy) -> PolicySettings:
    merged = dict(PolicySettings().classes) | classes
    return PolicySettings(timezone="UTC", quiet_hours=quiet_hours, caps=tuple(caps), classes=tuple(merged.items()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    now=instants,
    zone=st.sampled_from(ZONES),
    quiet_hours=quiet,
    action=st.sampled_from(["reschedule", "drop"]),
    ttl=st.sampled_from([0.0, HOUR, 6 * HOUR, DAY]),
    late=st.floats(0, 2 * DAY),
)
def test_never_inside_quiet_hours_never_past_the_ttl(now, zone, quiet_hours, action, ttl, late):
    rules = rules_with(quiet_hours, promotional=ClassPolicy(action, ttl, "reschedule"))
    intent = SendIntent("p", "email", "promotional", "k", intended_at=now - late)
    verdict = decide(intent, Facts(CONSENTED, None, zone, []), rules, now)
    deadline = now - late + ttl if ttl else float("inf")
    if quiet_hours is None:
        assert verdict.outcome == ("send" if now <= deadline else "drop")
        return
    start, end = quiet_hours
    quiet_now = local_in(now, zone, start, end, DAYS)
    if verdict.outcome == "send":
        assert not quiet_now
        assert now <= deadline
    elif verdict.outcome == "reschedule":
        assert action == "reschedule" and quiet_now
        # quiet hours defer, they do not delay: the send is due when they end (its ttl counts from then)
        assert verdict.retry_at is not None and now < verdict.retry_at
        assert now <= deadline
        assert not local_in(verdict.retry_at, zone, start, end, DAYS)  # allowed then …
        assert scan_closed(now, verdict.retry_at, zone, end, start, DAYS)  # … and not a minute before
    else:
        assert quiet_now or now > deadline
        assert verdict.reason.startswith(("quiet hours", "expired"))


@settings(max_examples=100, deadline=None)
@given(
    caps=st.lists(
        st.builds(
            FrequencyCap,
            st.sampled_from(["all", "email", "sms"]),
            st.integers(1, 3),
            st.sampled_from([HOUR, 6 * HOUR, DAY]),
        ),
        min_size=1,
        max_size=3,
    ),
    attempts=st.lists(st.tuples(st.floats(0, 4 * HOUR), st.sampled_from(["email", "sms"])), min_size=1, max_size=25),
)
def test_caps_are_never_exceeded_in_any_window(caps, attempts):
    """A stream of sends, each retried at its retry_at when rescheduled: no window ever holds more than a cap."""
    rules = rules_with(None, caps, promotional=ClassPolicy("reschedule", 0.0, "reschedule"))
    sent: list[tuple[float, str]] = []
    now = _utc(2026, 3, 29, 0)
    for gap, channel in attempts:
        now += gap
        at = now
        for _ in range(20):  # a reschedule is asked again at its time
            verdict = decide(
                SendIntent("p", channel, "promotional", "k"), Facts(CONSENTED, None, None, sent), rules, at
            )
            if verdict.outcome != "reschedule":
                break
            assert verdict.retry_at is not None and verdict.retry_at > at
            earlier = decide(
                SendIntent("p", channel, "promotional", "k"),
                Facts(CONSENTED, None, None, sent),
                rules,
                verdict.retry_at - 1,
            )
            assert earlier.outcome == "reschedule"  # the retry time is the first one with a free slot
            at = verdict.retry_at
        assert verdict.outcome == "send"
        sent.append((at, channel))
        sent.sort()
    for cap in caps:
        times = [t for t, c in sent if cap.channel in ("all", c)]
        for end in times:
            assert sum(1 for t in times if end - cap.window < t <= end) <= cap.count


@settings(max_examples=200, deadline=None)
@given(
    channel=st.sampled_from(["email", "sms", "whatsapp", "push", "print"]),
    message_class=classes,
    values=st.lists(st.sampled_from([True, False, None]), min_size=6, max_size=6),
    suppressed=st.sampled_from([None, "bounce", "complaint", "unsubscribe", "stop", "deletion"]),
)
def test_consent_and_suppression_are_never_violated(channel, message_class, values, suppressed):
    columns = ["consent_email", "consent_sms", "consent_whatsapp", "consent_push", "consent_direct_mail"]
    consent = dict(zip([*columns, "consent_purpose_marketing"], values, strict=True))
    rules = rules_with(None)
    now = _utc(2026, 6, 15, 12)
    verdict = decide(SendIntent("p", channel, message_class, "k"), Facts(consent, suppressed, None, []), rules, now)
    column = {"print": "consent_direct_mail"}.get(channel, f"consent_{channel}")
    if verdict.outcome == "send":
        assert suppressed is None
        if message_class == "transactional":
            assert consent[column] is not False
        else:
            assert consent[column] is True and consent["consent_purpose_marketing"] is not False
    else:
        assert verdict.outcome == "drop"


# --- decide: a table of cases with their exact reasons --------------------------------------------------

NOON_BERLIN = _utc(2026, 6, 15, 10)  # Monday 12:00 CEST
NIGHT_BERLIN = _utc(2026, 6, 15, 21)  # Monday 23:00 CEST
DEFAULTS = PolicySettings()


@pytest.mark.parametrize(
    ("intent", "facts", "now", "expected"),
    [
        (
            SendIntent("p", "email", "promotional", "k"),
            Facts(CONSENTED, None, "Europe/Berlin", []),
            NOON_BERLIN,
            Verdict("send", "allowed"),
        ),
        (
            SendIntent("p", "email", "promotional", "k"),
            Facts({"consent_email": None}, None, "Europe/Berlin", []),
            NOON_BERLIN,
            Verdict("drop", "no email consent (consent_email is NULL: never stated)"),
        ),
        (
            SendIntent("p", "sms", "promotional", "k"),
            Facts({"consent_sms": False}, None, "Europe/Berlin", []),
            NOON_BERLIN,
            Verdict("drop", "no sms consent (consent_sms is false: opted out)"),
        ),
        (
            SendIntent("p", "email", "promotional", "k"),
            Facts({**CONSENTED, "consent_purpose_marketing": False}, None, "Europe/Berlin", []),
            NOON_BERLIN,
            Verdict("drop", "no marketing consent (consent_purpose_marketing is false)"),
        ),
        (
            SendIntent("p", "email", "transactional", "k"),
            Facts({"consent_email": False}, None, "Europe/Berlin", []),
            NOON_BERLIN,
            Verdict("drop", "opted out of email (consent_email is false)"),
        ),
        (
            SendIntent("p", "email", "transactional", "k"),
            Facts({}, None, "Europe/Berlin", []),
            NIGHT_BERLIN,
            Verdict("send", "allowed"),  # transactional: no stated no is enough, quiet hours ignored
        ),
        (
            SendIntent("p", "email", "promotional", "k"),
            Facts(CONSENTED, "bounce", "Europe/Berlin", []),
            NOON_BERLIN,
            Verdict("drop", "suppressed (bounce)"),
        ),
        (
            SendIntent("p", "whatsapp", "promotional", "k", free_form=True),
            Facts(CONSENTED, None, "Europe/Berlin", [], whatsapp_last_inbound=NOON_BERLIN - 25 * HOUR),
            NOON_BERLIN,
            Verdict("drop", "whatsapp free-form message outside the 24-hour window (the person last wrote 25h ago)"),
        ),
        (
            SendIntent("p", "whatsapp", "promotional", "k", free_form=True),
            Facts(CONSENTED, None, "Europe/Berlin", []),
            NOON_BERLIN,
            Verdict("drop", "whatsapp free-form message outside the 24-hour window (the person never wrote to us)"),
        ),
        (
            SendIntent("p", "whatsapp", "promotional", "k", free_form=True),
            Facts(CONSENTED, None, "Europe/Berlin", [], whatsapp_last_inbound=NOON_BERLIN - 23 * HOUR),
            NOON_BERLIN,
            Verdict("send", "allowed"),
        ),
        (
            SendIntent("p", "whatsapp", "promotional", "k", free_form=False),
            Facts(CONSENTED, None, "Europe/Berlin", []),
            NOON_BERLIN,
            Verdict("send", "allowed"),  # a template goes any time
        ),
        (
            SendIntent("p", "email", "promotional", "k", intended_at=_utc(2026, 6, 15, 6)),  # due 08:00 local
            Facts(CONSENTED, None, "Europe/Berlin", []),
            _utc(2026, 6, 15, 13),  # 15:00 local after an outage
            Verdict("drop", "expired: due 7h ago, ttl 6h"),
        ),
        (
            SendIntent("p", "email", "promotional", "k"),
            Facts(CONSENTED, None, "Europe/Berlin", []),
            NIGHT_BERLIN,  # 23:00: quiet hours defer it to 08:00, when its 6 h of life start (not dropped)
            Verdict(
                "reschedule",
                "quiet hours 21:00-08:00 in Europe/Berlin: next allowed 2026-06-16 08:00 CEST",
                _utc(2026, 6, 16, 6),
            ),
        ),
        (
            SendIntent("p", "email", "promotional", "k"),
            Facts(CONSENTED, None, "Europe/Berlin", []),
            _utc(2026, 6, 16, 4),  # 06:00 CEST
            Verdict(
                "reschedule",
                "quiet hours 21:00-08:00 in Europe/Berlin: next allowed 2026-06-16 08:00 CEST",
                _utc(2026, 6, 16, 6),
            ),
        ),
        (
            SendIntent("p", "email", "reminder", "k", intended_at=NIGHT_BERLIN),
            Facts(CONSENTED, None, "Europe/Berlin", []),
            NIGHT_BERLIN,
            Verdict(
                "reschedule",
                "quiet hours 21:00-08:00 in Europe/Berlin: next allowed 2026-06-16 08:00 CEST",
                _utc(2026, 6, 16, 6),
            ),
        ),
        (
            SendIntent("p", "email", "promotional", "k"),
            Facts(CONSENTED, None, None, []),  # no zone: the default (UTC)
            _utc(2026, 6, 16, 5),
            Verdict(
                "reschedule", "quiet hours 21:00-08:00 in UTC: next allowed 2026-06-16 08:00 UTC", _utc(2026, 6, 16, 8)
            ),
        ),
        (
            SendIntent("p", "sms", "promotional", "k"),
            Facts(CONSENTED, None, "Europe/Berlin", [(NOON_BERLIN - 2 * HOUR, "sms")]),
            NOON_BERLIN,
            Verdict(
                "drop",
                "expired before it could go: frequency cap: 1 per 1d on sms: next allowed 2026-06-16 10:00 CEST, "
                "after its ttl 6h",
            ),
        ),
        (
            SendIntent("p", "email", "reminder", "k"),
            Facts(CONSENTED, None, "Europe/Berlin", [(NOON_BERLIN - i * HOUR, "email") for i in (1, 2, 3)]),
            NOON_BERLIN,
            Verdict("drop", "frequency cap: 3 per 7d on all channels"),
        ),
        (
            SendIntent("p", "email", "transactional", "k"),
            Facts(CONSENTED, None, "Europe/Berlin", [(NOON_BERLIN - i * HOUR, "email") for i in (1, 2, 3)]),
            NOON_BERLIN,
            Verdict("send", "allowed"),  # transactional messages are not capped
        ),
    ],
)
def test_exact_reasons(intent, facts, now, expected):
    assert decide(intent, facts, DEFAULTS, now) == expected


def test_a_capped_promotion_is_rescheduled_to_when_the_slot_frees_and_out_of_quiet_hours():
    rules = rules_with(
        ("21:00", "08:00"), [FrequencyCap("sms", 1, DAY)], promotional=ClassPolicy("reschedule", 2 * DAY, "reschedule")
    )
    sent_at = _utc(2026, 6, 14, 20)  # 22:00 Berlin the day before (a transactional exception, say)
    verdict = decide(
        SendIntent("p", "sms", "promotional", "k"),
        Facts(CONSENTED, None, "Europe/Berlin", [(sent_at, "sms")]),
        rules,
        NOON_BERLIN,
    )
    # the slot frees at 22:00 local, inside quiet hours: next 08:00
    assert verdict == Verdict(
        "reschedule",
        "frequency cap: 1 per 1d on sms; then quiet hours 21:00-08:00 in Europe/Berlin: next allowed 2026-06-16 08:00 CEST",
        _utc(2026, 6, 16, 6),
    )


def test_consent_problem_wording_is_what_messages_send_reported():
    assert consent_problem("print", "promotional", {"consent_direct_mail": None}) == (
        "no print consent (consent_direct_mail is NULL: never stated)"
    )
    assert consent_problem("email", "transactional", {}) is None


# --- [policy] settings ------------------------------------------------------------------------------------


def test_policy_settings_from_the_file(tmp_path: Path):
    config = tmp_path / "omniweave.toml"
    config.write_text(
        """
[policy]
timezone = "America/New_York"
quiet_hours = ["22:00", "07:30"]
caps = [{channel = "all", count = 5, window = "1w"}, {channel = "whatsapp", count = 1, window = "12h"}]
[policy.classes.promotional]
ttl = "3h"
capped = "drop"
[policy.classes.digest]
quiet_hours = "drop"
"""
    )
    rules = load_settings({}, config_file=config).policy
    assert rules.timezone == "America/New_York"
    assert rules.quiet_hours == ("22:00", "07:30")
    assert rules.caps == (FrequencyCap("all", 5, 7 * DAY), FrequencyCap("whatsapp", 1, 12 * HOUR))
    assert rules.rule("promotional") == ClassPolicy("reschedule", 3 * HOUR, "drop")
    assert rules.rule("digest") == ClassPolicy("drop", 6 * HOUR, "reschedule")  # over the default promotional rules
    assert rules.rule("transactional") == ClassPolicy("ignore", DAY, "ignore")
    assert rules.rule("unknown") == rules.rule("promotional")
    # the settings survive the trip to a child process
    again = load_settings({}, config_file=config)
    assert type(again).from_dict(again.to_dict()).policy == rules


def test_bad_policy_settings_name_each_key(tmp_path: Path):
    config = tmp_path / "omniweave.toml"
    config.write_text(
        """
[policy]
timezone = "Europe/Nowhere"
quiet_hours = ["9pm", "08:00"]
caps = [{channel = "fax", count = -1, window = "soon"}]
colour = "red"
[policy.classes.promotional]
ttl = "forever"
capped = "shout"
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config_file=config)
    text = str(caught.value)
    assert "8 problems" in text
    assert "timezone must be an IANA time zone such as 'Europe/Berlin', got 'Europe/Nowhere'" in text
    assert "quiet_hours must be [start, end]" in text and "got ['9pm', '08:00']" in text
    assert "caps[0]: channel must be one of all, email, sms" in text and "got 'fax'" in text
    assert "caps[0]: count must be a whole number >= 0, got -1" in text
    assert "caps[0]: window must be a duration such as '7d'" in text and "got 'soon'" in text
    assert "unknown key 'colour'" in text
    assert "classes.promotional: ttl must be a duration" in text and "got 'forever'" in text
    assert "classes.promotional: capped must be one of reschedule, drop, ignore, got 'shout'" in text


def test_no_quiet_hours_and_no_caps():
    config = {"quiet_hours": [], "caps": []}
    problems: list[str] = []
    rules = PolicySettings.parse(config, "test", problems)
    assert problems == [] and rules.quiet_hours is None and rules.caps == ()
    verdict = decide(
        SendIntent("p", "email", "promotional", "k"),
        Facts(CONSENTED, None, "UTC", [(NIGHT_BERLIN, "email")] * 9),
        rules,
        NIGHT_BERLIN,
    )
    assert verdict == Verdict("send", "allowed")
