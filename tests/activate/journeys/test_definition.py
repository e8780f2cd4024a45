"""Journey files: the built-in library, every kind of step, the canonical form, and bad documents with every
problem reported at once."""

from __future__ import annotations

import copy
import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from omniweave.activate.journeys.definition import (
    JourneyInvalid,
    StepMapping,
    checksum,
    journey_to_dict,
    parse_duration,
    parse_journey,
    parse_journey_text,
    removed_steps,
)
from omniweave.activate.journeys.model import (
    Branch,
    CallWebhook,
    Entry,
    EventCount,
    Exit,
    Goal,
    IssueCoupon,
    PropertyFilter,
    ReEntry,
    Send,
    Split,
    UpdateTrait,
    Wait,
    WaitForEvent,
    WaitUntilWindow,
)
from omniweave.activate.service.messages import builtin_messages, load_brand, validate_message
from omniweave.errors import InputError
from omniweave.settings import Settings

LIBRARY = resources.files("omniweave.activate.journeys") / "library"
BUILTIN = {
    "cart_abandonment",
    "post_purchase_cross_sell",
    "welcome_till_capture",
    "winback",
    "store_event_invitation",
    "birthday_coupon",
    "browse_abandonment",
    "welcome_signup",
}
MESSAGING = ("email", "sms", "whatsapp", "push")  # what `preferred` may turn out to be


def _library() -> dict[str, Path]:
    return {Path(str(p)).stem: Path(str(p)) for p in LIBRARY.iterdir() if p.name.endswith(".yaml")}


# --- the built-in journeys ---------------------------------------------------------------------------------


def test_every_builtin_journey_validates_with_the_known_messages_and_round_trips() -> None:
    messages = builtin_messages()
    files = _library()
    assert set(files) == BUILTIN
    for name, path in sorted(files.items()):
        journey = parse_journey_text(path.read_text("utf-8"), str(path), default_name=name, messages=set(messages))
        assert journey.name == name and journey.holdout > 0 and journey.goal is not None, name
        again = parse_journey(json.loads(json.dumps(journey_to_dict(journey))), name)
        assert again == journey and checksum(again) == checksum(journey), name
        sends = [s.action for s in journey.steps.values() if isinstance(s.action, Send)]
        assert sends, name
        for send in sends:  # each channel a send may use is one its message is written for
            written = messages[send.message].channels
            for channel in (send.channel, *send.fallback):
                needed = MESSAGING if channel == "preferred" else (channel,)
                assert set(needed) <= set(written), (name, send.message, channel, written)


def test_the_messages_the_builtin_journeys_send_pass_the_checker() -> None:
    messages = builtin_messages()
    used = {
        s.action.message
        for path in _library().values()
        for s in parse_journey_text(path.read_text("utf-8"), str(path)).steps.values()
        if isinstance(s.action, Send)
    }
    assert {
        "cross_sell_insurance",
        "cross_sell_accessories",
        "winback_coupon",
        "store_event_reminder",
        "browse_reminder",
    } <= used
    brand = load_brand(Settings(home="/nonexistent-omniweave-home"))
    for name in sorted(used):
        validation = validate_message(messages[name], brand)
        assert validation.ok and not validation.findings, [f.to_dict() for f in validation.findings]


def test_the_builtin_journeys_use_the_demo_worlds_names() -> None:
    files = _library()

    def load(name: str) -> Any:
        return parse_journey_text(files[name].read_text("utf-8"), name)

    cart = load("cart_abandonment")
    assert cart.entry == Entry(
        "event", event="Product Added", where=(PropertyFilter("cart_id", "exists"),), correlate="cart_id"
    )
    waits = [s.action for s in cart.steps.values() if isinstance(s.action, WaitForEvent)]
    assert waits and all(w.correlate == "cart_id" and w.correlate_as == "checkout_id" for w in waits)
    assert [s.action.channel for s in cart.steps.values() if isinstance(s.action, Send)] == ["push", "sms", "email"]
    # an electronics order without a home item enters; a home order later is the goal
    assert load("post_purchase_cross_sell").entry.where == (
        PropertyFilter("products.category", "eq", "electronics"),
        PropertyFilter("products.category", "not_in", ("home",)),
    )
    assert load("welcome_till_capture").entry.event == "Email Captured"
    assert load("winback").entry == Entry("segment_entered", segment="lapsing_high_value")
    birthday = load("birthday_coupon").entry
    assert (birthday.kind, birthday.trait, birthday.yearly, birthday.at) == ("date", "birthday", True, "09:00")
    assert load("store_event_invitation").goal == Goal("Store Event Attended", 14 * 86400.0)
    assert load("browse_abandonment").goal == Goal(
        "Order Completed", 3 * 86400.0, correlate="product_id", correlate_as="products.product_id"
    )
    segments = {p.stem for p in Path(str(resources.files("omniweave.segments") / "library")).glob("*.yaml")}
    assert "lapsing_high_value" in segments


# --- every kind of step --------------------------------------------------------------------------------------

FULL = """
name: everything
description: Every kind of step.
class: promotional
timezone: Europe/Berlin
entry:
  event: Product Added
  where: {cart_id: {exists: true}, price: {gte: 10, lt: 500}, category: home}
  correlate: cart_id
re_entry: {mode: after, cooldown: 7d, max_entries: 5}
holdout: 0.1
goal: {event: Order Completed, within: 7d, correlate: cart_id, correlate_as: checkout_id}
start: vip
steps:
  vip:
    branch:
      - if: {traits: {lifetime_value: {gt: 500}}, events: [{event: Order Completed, within: 90d, min_count: 2}], in_segment: lapsing_high_value}
        next: email
      - if: {events: [{event: Order Completed, none: true}], trigger: {price: {gt: 100}}, not_in_segment: [a, b]}
        next: coupon
      - else: ab
  ab: {split: {a: {weight: 50, next: wait_hour}, b: {weight: 30, next: window}, c: {weight: 20, next: rsvp}}}
  wait_hour: {wait: 1h30m, next: ordered}
  ordered:
    wait_for: {event: Order Completed, correlate: cart_id, correlate_as: checkout_id, where: {total: {gt: 0}}, timeout: 0s}
    on_event: done
    on_timeout: push
  push: {send: {message: cart_reminder, channel: push, fallback: [sms, email], class: reminder}, next: email, on_error: done}
  window: {wait_until: {between: ["20:00", "08:00"], days: [sat, mon]}, next: email, label: overnight}
  rsvp: {wait_for: {segment_entered: event_attendees, timeout: 2d}, on_event: flag, on_timeout: done}
  email: {send: {message: cart_reminder, channel: preferred, fallback: [email]}, next: done}
  coupon: {issue_coupon: {pool: winback}, next: flag}
  flag: {update_trait: {trait: winback_sent, value: [1, "two", 2024-05-01]}, next: hook}
  hook: {webhook: {url: "https://example.com/hook", secret_env: HOOK_SECRET}, next: done}
  done: {exit: converted}
"""


def test_every_kind_of_step_parses_into_the_model() -> None:
    j = parse_journey_text(FULL, "everything.yaml", default_name="everything", messages={"cart_reminder"})
    assert j.campaign == "everything" and j.default_timezone == "Europe/Berlin" and j.message_class == "promotional"
    assert j.entry.where == (
        PropertyFilter("cart_id", "exists"),
        PropertyFilter("price", "gte", 10),
        PropertyFilter("price", "lt", 500),
        PropertyFilter("category", "eq", "home"),
    )
    assert j.re_entry == ReEntry("after", 7 * 86400.0, 5) and j.holdout == 0.1
    assert j.goal == Goal("Order Completed", 7 * 86400.0, (), "cart_id", "checkout_id")
    s = {k: v.action for k, v in j.steps.items()}
    vip = s["vip"]
    assert isinstance(vip, Branch) and vip.otherwise == "ab" and [a.next for a in vip.arms] == ["email", "coupon"]
    assert vip.arms[0].condition.events == (EventCount("Order Completed", (), 90 * 86400.0, 2, False),)
    assert vip.arms[0].condition.in_segments == ("lapsing_high_value",)
    assert vip.arms[1].condition.events == (EventCount("Order Completed", (), None, 0, True),)
    assert vip.arms[1].condition.not_in_segments == ("a", "b")
    assert vip.arms[1].condition.trigger == (PropertyFilter("price", "gt", 100),)
    assert s["ab"] == Split((("a", 50.0, "wait_hour"), ("b", 30.0, "window"), ("c", 20.0, "rsvp")))
    assert s["wait_hour"] == Wait(5400.0, "ordered")
    assert s["ordered"] == WaitForEvent(
        0.0, "done", "push", "Order Completed", (PropertyFilter("total", "gt", 0),), "cart_id", "checkout_id"
    )
    assert s["push"] == Send("cart_reminder", "push", "email", ("sms", "email"), "reminder")
    assert j.steps["push"].on_error == "done" and j.steps["window"].label == "overnight"
    assert s["window"] == WaitUntilWindow("20:00", "08:00", ("mon", "sat"), "email")
    assert s["rsvp"] == WaitForEvent(172800.0, "flag", "done", segment="event_attendees", segment_change="entered")
    assert s["coupon"] == IssueCoupon("winback", "flag")
    assert s["flag"] == UpdateTrait("winback_sent", (1, "two", "2024-05-01"), "hook")
    assert s["hook"] == CallWebhook("https://example.com/hook", "done", "HOOK_SECRET")
    assert s["done"] == Exit("converted")
    canonical = journey_to_dict(j)
    assert json.loads(json.dumps(canonical)) == canonical  # JSON-able as it is
    assert parse_journey(canonical, "again") == j


def test_toml_with_the_same_keys_gives_the_same_journey() -> None:
    document = yaml.safe_load(FULL)
    document["steps"]["flag"]["update_trait"]["value"] = [1, "two", "2024-05-01"]
    toml_text = _to_toml(document)
    from_toml = parse_journey_text(toml_text, "everything.toml", fmt="toml", messages={"cart_reminder"})
    assert tomllib.loads(toml_text)["steps"]["wait_hour"] == {"wait": "1h30m", "next": "ordered"}
    assert from_toml == parse_journey_text(FULL, "everything.yaml")


def _to_toml(document: dict[str, Any]) -> str:
    """A small TOML writer for the test's document (inline tables for everything below the top level)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if hasattr(v, "isoformat"):
            return v.isoformat()
        return "{" + ", ".join(f"{json.dumps(str(k))} = {value(x)}" for k, x in v.items()) + "}"

    lines = [f"{k} = {value(v)}" for k, v in document.items() if not isinstance(v, dict)]
    for key, table in document.items():
        if isinstance(table, dict):
            lines.append(f"[{key}]")
            lines += [f"{json.dumps(str(k))} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def test_durations() -> None:
    assert [parse_duration(v) for v in ("90s", "15m", "1h", "2d", "1w", "1h30m", 45, 2.5, "0s")] == [
        90.0,
        900.0,
        3600.0,
        172800.0,
        604800.0,
        5400.0,
        45.0,
        2.5,
        0.0,
    ]
    for bad in ("1 hour", "-1d", "1y", "", True, None, -3, "h"):
        with pytest.raises(ValueError, match="expected a duration"):
            parse_duration(bad)


def test_checksum_tells_definitions_apart_but_not_versions() -> None:
    base = parse_journey_text(FULL, "a")
    assert checksum(base) == checksum(parse_journey({**journey_to_dict(base), "version": 3}, "b"))
    changed = journey_to_dict(base)
    changed["steps"]["wait_hour"]["wait"] = 7200
    assert checksum(parse_journey(changed, "c")) != checksum(base)
    assert len(checksum(base)) == 64


# --- bad documents --------------------------------------------------------------------------------------------


def _base() -> dict[str, Any]:
    return {
        "name": "cart",
        "entry": {"event": "Product Added", "correlate": "cart_id"},
        "start": "first",
        "steps": {
            "first": {"wait": "1h", "next": "check"},
            "check": {
                "wait_for": {"event": "Order Completed", "correlate": "cart_id", "timeout": "1d"},
                "on_event": "done",
                "on_timeout": "mail",
            },
            "mail": {"send": {"message": "cart_reminder", "channel": "email"}, "next": "done"},
            "done": {"exit": "converted"},
        },
    }


def _with(**changes: Any) -> dict[str, Any]:
    """The base document with dotted paths set (a value of ... deletes the key)."""
    document = _base()
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = document
        for part in parents:
            node = node.setdefault(part, {})
        if value is ...:
            del node[last]
        else:
            node[last] = copy.deepcopy(value)
    return document


BAD: list[tuple[str, Any, list[tuple[str, str]]]] = [
    ("not a mapping", ["steps"], [("", "expected a mapping with name, entry, start, steps; got list")]),
    (
        "nothing but a name",
        {"name": "Bad Name!"},
        [
            ("name", "expected 1-100 lower-case letters, digits or _; got 'Bad Name!'"),
            ("entry", "missing: how people enter"),
            ("start", "missing: the id of the first step"),
            ("steps", "expected a mapping of step id -> step; got None"),
        ],
    ),
    (
        "unknown keys at every level",
        _with(
            colour="red",
            entry__filter={"a": 1},
            steps__first__delay="1h",
            steps__mail__send={"message": "cart_reminder", "channel": "email", "subject": "Hi"},
        ),
        [
            ("colour", "unknown field; allowed: campaign, class, description"),
            ("entry.filter", "unknown field; allowed: correlate, event, where"),
            ("steps.first.delay", "unknown field; allowed: label, next, on_error, wait"),
            ("steps.mail.send.subject", "unknown field; allowed: channel, class, fallback, message"),
        ],
    ),
    (
        "bad durations",
        _with(
            steps__first__wait="1 hour",
            steps__check__wait_for={"event": "Order Completed", "correlate": "cart_id", "timeout": "-1d"},
            goal={"event": "Order Completed", "within": 0},
            re_entry={"mode": "after", "cooldown": "7x"},
        ),
        [
            ("re_entry.cooldown", "expected a duration (90s, 15m, 1h, 2d, 1w, or a number of seconds >= 0); got '7x'"),
            ("goal.within", "expected a duration longer than 0 s; got 0"),
            ("steps.first.wait", "got '1 hour'"),
            ("steps.check.wait_for.timeout", "got '-1d'"),
        ],
    ),
    (
        "unknown step kind, targets that name no step, a bad start",
        _with(
            start="begin",
            steps__first={"sleep": "1h", "next": "check"},
            steps__mail={
                "send": {"message": "cart_reminder", "channel": "email"},
                "next": "nowhere",
                "on_error": "oops",
            },
        ),
        [
            (
                "steps.first",
                "expected exactly one step kind of wait, wait_until, wait_for, branch, split, send, issue_coupon, "
                "update_trait, webhook, exit; got next, sleep",
            ),
            ("steps.mail.next", "no step 'nowhere'; steps: first, check, mail, done"),
            ("steps.mail.on_error", "no step 'oops'"),
            ("start", "no step 'begin'; steps: first, check, mail, done"),
        ],
    ),
    (
        "unreachable steps and steps with no way to an end",
        _with(
            steps__check={
                "wait_for": {"event": "Order Completed", "timeout": "1d"},
                "on_event": "done",
                "on_timeout": "loop_a",
            },
            steps__loop_a={"wait": "1d", "next": "loop_b"},
            steps__loop_b={"wait_for": {"event": "X", "timeout": "1h"}, "on_event": "loop_a", "on_timeout": "loop_a"},
            steps__orphan={"exit": "never"},
        ),
        [
            ("steps.mail", "unreachable: no path from start 'first' leads here"),
            ("steps.orphan", "unreachable"),
            ("steps.loop_a", "no way to an end: no path from here reaches an exit step"),
            ("steps.loop_b", "no way to an end"),
        ],
    ),
    (
        "cycles with no wait",
        _with(
            steps__mail={"send": {"message": "cart_reminder", "channel": "email"}, "next": "again"},
            steps__again={"branch": [{"if": {"traits": {"vip": True}}, "next": "window"}, {"else": "done"}]},
            steps__window={"wait_until": {"between": ["09:00", "17:00"]}, "next": "mail"},
            steps__first={"wait": "0s", "next": "first2"},
            steps__first2={"wait": 0, "next": "check"},
            steps__check={
                "wait_for": {"event": "Order Completed", "correlate": "cart_id", "timeout": "0s"},
                "on_event": "done",
                "on_timeout": "mail",
                "on_error": "check",
            },
        ),
        [
            ("steps.check", "a cycle with no wait: check -> check could loop forever; put a wait (> 0s) on it"),
            ("steps.mail", "a cycle with no wait: mail -> again -> window -> mail could loop forever"),
        ],
    ),
    (
        "correlate with no correlate on the entry",
        _with(
            entry={"segment_entered": "cart_abandoners"},
            goal={"event": "Order Completed", "within": "7d", "correlate": "cart_id"},
        ),
        [
            ("goal.correlate", "correlates on 'cart_id' but the entry has none"),
            ("steps.check.wait_for.correlate", "correlates on 'cart_id' but the entry has none"),
        ],
    ),
    (
        "a correlate other than the entry's; correlate_as alone",
        _with(
            goal={"event": "Order Completed", "within": "7d", "correlate": "order_id", "correlate_as": "x"},
            steps__check__wait_for={"event": "Order Completed", "correlate_as": "checkout_id", "timeout": "1d"},
        ),
        [
            ("steps.check.wait_for.correlate_as", "correlate_as needs correlate (the trigger's property)"),
            ("goal.correlate", "expected the entry's correlate 'cart_id'; got 'order_id'"),
        ],
    ),
    (
        "split weights not positive, too few arms",
        _with(
            steps__first={
                "split": {
                    "a": {"weight": 0, "next": "check"},
                    "b": {"weight": -1, "next": "mail"},
                    "c": {"weight": "x", "next": "done"},
                }
            },
            steps__mail={"split": {"only": {"weight": 1, "next": "done"}}},
        ),
        [
            ("steps.first.split.a.weight", "expected a number > 0; got 0"),
            ("steps.first.split.b.weight", "expected a number > 0; got -1"),
            ("steps.first.split.c.weight", "expected a number > 0; got 'x'"),
            ("steps.mail.split", "expected at least two arms; got 1"),
        ],
    ),
    (
        "bad times, days and time zones",
        _with(
            timezone="Mars/Olympus_Mons",
            entry={"date": {"trait": "birthday", "yearly": "yes", "at": 1200}},
            steps__first={"wait_until": {"between": ["9:00", "25:00"], "days": ["mon", "funday"]}, "next": "check"},
            steps__mail={"wait_until": {"between": ["10:00", "10:00"]}, "next": "done"},
            steps__check={
                "wait_for": {"event": "Order Completed", "timeout": "1d"},
                "on_event": "done",
                "on_timeout": "mail",
            },
        ),
        [
            ("timezone", "expected an IANA time zone (e.g. Europe/Berlin, UTC); got 'Mars/Olympus_Mons'"),
            ("entry.date.yearly", "expected true or false; got 'yes'"),
            (
                "entry.date.at",
                'expected a local time "HH:MM" (00:00-23:59) (quote it: YAML reads an unquoted 20:00 as a number); got 1200',
            ),
            ("steps.first.wait_until.between[0]", "got '9:00'"),
            ("steps.first.wait_until.between[1]", "got '25:00'"),
            ("steps.first.wait_until.days", "unknown day(s) 'funday'; expected mon, tue, wed, thu, fri, sat, sun"),
            ("steps.mail.wait_until.between", "expected a window: start and end are both 10:00"),
        ],
    ),
    (
        "filters with unknown operators and bad values",
        _with(
            entry__where={
                "price": {"greater": 5},
                "tags": {"in": []},
                "x": {"exists": "yes"},
                "y": {"gt": [1]},
                "z": {"a": 1},
            },
            steps__first={
                "branch": [
                    {
                        "if": {
                            "traits": {"ltv": {"gte": True}},
                            "events": [{"event": "Order Completed", "min_count": 0}],
                            "segments": ["x"],
                        },
                        "next": "check",
                    },
                    {"else": "done"},
                ]
            },
        ),
        [
            (
                "entry.where.price.greater",
                "unknown operator 'greater'; expected one of eq, ne, gt, gte, lt, lte, in, not_in, contains, exists, missing",
            ),
            ("entry.where.tags.in", "expected a non-empty list of values; got []"),
            ("entry.where.x.exists", "expected true or false; got 'yes'"),
            ("entry.where.y.gt", "expected a number, a text or a date; got [1]"),
            ("entry.where.z.a", "unknown operator 'a'"),
            (
                "steps.first.branch[0].if.segments",
                "unknown field; allowed: events, in_segment, not_in_segment, traits, trigger",
            ),
            ("steps.first.branch[0].if.events[0].min_count", "expected a whole number >= 1; got 0"),
            ("steps.first.branch[0].if.traits.ltv.gte", "expected a number, a text or a date; got True"),
        ],
    ),
    (
        "unknown message, channel and fallbacks",
        _with(
            steps__mail={"send": {"message": "nope", "channel": "fax", "fallback": ["preferred"]}, "next": "done"},
            steps__first={
                "send": {"message": "cart_reminder", "channel": "sms", "fallback": ["email", "sms"]},
                "next": "check",
            },
        ),
        [
            ("steps.first.send.fallback", "a channel is named twice (channel 'sms', fallback ['email', 'sms'])"),
            ("steps.mail.send.message", "unknown message 'nope'; known: birthday_coupon, cart_reminder"),
            (
                "steps.mail.send.channel",
                "expected one of email, sms, whatsapp, push, webhook, print, ads, preferred; got 'fax'",
            ),
            (
                "steps.mail.send.fallback",
                "expected a list of channels (email, sms, whatsapp, push, webhook, print, ads); got ['preferred']",
            ),
        ],
    ),
    (
        "the name is not the file's, holdout and class out of range, bad branch, webhook and trait",
        _with(
            name="other",
            holdout=1.5,
            **{"class": "Promo!"},
            steps__first={"branch": [{"else": "check"}, {"if": {}, "next": "check"}]},
            steps__mail={"webhook": {"url": "ftp://x", "secret_env": "lower"}, "next": "done"},
            steps__done={"update_trait": {"trait": "x"}, "next": "end"},
            steps__end={"exit": ""},
        ),
        [
            ("name", "expected the file's name 'cart'; got 'other'"),
            ("class", "expected a message class (promotional, transactional, ...); got 'Promo!'"),
            ("holdout", "expected a share from 0 up to (not including) 1, e.g. 0.1; got 1.5"),
            ("steps.first.branch[0]", "the else arm must come last"),
            ("steps.mail.webhook.url", "expected an https:// (or http://) URL; got 'ftp://x'"),
            ("steps.mail.webhook.secret_env", "expected an environment variable name (A-Z, 0-9, _); got 'lower'"),
            ("steps.done.update_trait.value", "missing: the value to set (null clears the trait)"),
            ("steps.end.exit", "expected an exit reason (e.g. converted, done); got ''"),
        ],
    ),
]


@pytest.mark.parametrize(("document", "expected"), [(d, e) for _, d, e in BAD], ids=[c for c, _, _ in BAD])
def test_bad_documents_report_every_problem_at_once(document: Any, expected: list[tuple[str, str]]) -> None:
    with pytest.raises(JourneyInvalid) as caught:
        parse_journey(document, "cart.yaml", default_name="cart", messages={"cart_reminder", "birthday_coupon"})
    problems = caught.value.problems
    assert [p for p, _ in problems] == [p for p, _ in expected], problems
    for (_, message), (_, part) in zip(problems, expected, strict=True):
        assert part in message, (message, part)
    assert isinstance(caught.value, InputError) and isinstance(caught.value, ValueError)
    assert f"journey cart.yaml: {len(expected)} problem(s)" in str(caught.value)


def test_a_syntax_error_is_a_journey_error_naming_the_file() -> None:
    with pytest.raises(JourneyInvalid, match="journey broken.yaml: 1 problem") as caught:
        parse_journey_text("name: [unclosed\n", "broken.yaml")
    assert "cannot parse the YAML text" in caught.value.problems[0][1]
    with pytest.raises(JourneyInvalid, match="cannot parse the TOML text"):
        parse_journey_text("name = \n", "broken.toml", fmt="toml")


def test_the_base_document_is_valid() -> None:
    journey = parse_journey(_base(), "cart.yaml", default_name="cart", messages={"cart_reminder"})
    assert journey.campaign == "cart" and journey.re_entry == ReEntry() and journey.default_timezone == "UTC"


# --- publishing -------------------------------------------------------------------------------------------------


def test_removed_steps_and_the_step_mapping_for_publishing() -> None:
    old = parse_journey({**_base(), "version": 1}, "cart")
    document = _base()
    document["steps"]["check"]["on_timeout"] = "sms"
    del document["steps"]["mail"]
    document["steps"]["sms"] = {"send": {"message": "cart_reminder", "channel": "sms"}, "next": "done"}
    new = parse_journey(document, "cart")
    assert removed_steps(old, new) == ["mail"]
    assert StepMapping().check(old, new, {"first": 3}) == StepMapping()  # nobody waits at "mail"
    with pytest.raises(JourneyInvalid) as caught:
        StepMapping().check(old, new, {"mail": 4, "first": 2})
    assert caught.value.problems == [
        (
            "map.mail",
            "4 run(s) wait at 'mail', which the new version removes; map it to a step of the new version (mail=STEP)",
        )
    ]
    mapping = StepMapping.parse(["mail=sms"])
    assert mapping.moves == {"mail": "sms"} and mapping.check(old, new, {"mail": 4}) is mapping
    with pytest.raises(JourneyInvalid) as caught:
        StepMapping.parse({"first": "done", "ghost": "sms", "mail": "nowhere"}).check(old, new, {"mail": 1})
    assert caught.value.problems == [
        ("map.first", "step 'first' is kept in the new version; people there stay"),
        ("map.ghost", "the old version has no step 'ghost'; steps: first, check, mail, done"),
        ("map.mail", "the new version has no step 'nowhere'; steps: first, check, done, sms"),
    ]
    with pytest.raises(InputError, match="expected OLD_STEP=NEW_STEP; got 'mail'"):
        StepMapping.parse(["mail"])
    with pytest.raises(InputError, match="mapped twice"):
        StepMapping.parse(["mail=sms", "mail=done"])


def test_the_example_in_the_docs_is_valid() -> None:
    text = (Path(__file__).parents[3] / "docs" / "journeys.md").read_text("utf-8")
    example = text.split("### An example with every kind of step", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    journey = parse_journey_text(
        example, "docs/journeys.md", default_name="cart_abandonment", messages={"cart_reminder"}
    )
    kinds = {step.kind for step in journey.steps.values()}
    assert kinds == {
        "Branch",
        "Split",
        "Wait",
        "WaitForEvent",
        "Send",
        "WaitUntilWindow",
        "IssueCoupon",
        "UpdateTrait",
        "CallWebhook",
        "Exit",
    }


# --- the graph checks against brute force ------------------------------------------------------------------------


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    """Random small step graphs: waits (0 s or 1 h), sends, branches, wait_fors (0 s or 1 d) and exits."""
    ids = [f"s{i}" for i in range(draw(st.integers(2, 7)))]
    target = st.sampled_from(ids)
    steps: dict[str, dict[str, Any]] = {}
    for step_id in ids:
        kind = draw(st.sampled_from(["wait", "send", "branch", "wait_for", "exit"]))
        if kind == "wait":
            steps[step_id] = {"wait": draw(st.sampled_from(["0s", "1h"])), "next": draw(target)}
        elif kind == "send":
            steps[step_id] = {"send": {"message": "m", "channel": "email"}, "next": draw(target)}
            if draw(st.booleans()):
                steps[step_id]["on_error"] = draw(target)
        elif kind == "branch":
            steps[step_id] = {"branch": [{"if": {"traits": {"a": 1}}, "next": draw(target)}, {"else": draw(target)}]}
        elif kind == "wait_for":
            timeout = draw(st.sampled_from(["0s", "1d"]))
            steps[step_id] = {
                "wait_for": {"event": "E", "timeout": timeout},
                "on_event": draw(target),
                "on_timeout": draw(target),
            }
        else:
            steps[step_id] = {"exit": "done"}
    return steps


def _edges(spec: dict[str, Any]) -> list[str]:
    out = [spec[k] for k in ("next", "on_event", "on_timeout", "on_error") if k in spec]
    return out + [arm.get("next", arm.get("else")) for arm in spec.get("branch", [])]


def _reaches(steps: dict[str, dict[str, Any]], start: str, goal: Any, allowed: Any = lambda s: True) -> bool:
    """Brute force: is there a path of one or more edges from `start` to a step where `goal` holds, through
    steps where `allowed` holds?"""
    seen: set[str] = set()
    todo = [t for t in _edges(steps[start])]
    while todo:
        node = todo.pop()
        if goal(node):
            return True
        if node in seen or not allowed(node):
            continue
        seen.add(node)
        todo += _edges(steps[node])
    return False


@settings(max_examples=150, deadline=None)
@given(graphs())
def test_the_graph_checks_agree_with_brute_force(steps: dict[str, dict[str, Any]]) -> None:
    def waits(s: str) -> bool:
        spec = steps[s]
        return spec.get("wait") == "1h" or spec.get("wait_for", {}).get("timeout") == "1d"

    reachable = {"s0"} | {s for s in steps if _reaches(steps, "s0", lambda n, s=s: n == s)}
    unreachable = [s for s in steps if s not in reachable]
    endless = [
        s
        for s in steps
        if s in reachable and "exit" not in steps[s] and not _reaches(steps, s, lambda n: "exit" in steps[n])
    ]
    looping = {
        s for s in reachable if not waits(s) and _reaches(steps, s, lambda n, s=s: n == s, lambda n: not waits(n))
    }
    document = {"name": "g", "entry": {"api": True}, "start": "s0", "steps": steps}
    try:
        parse_journey(document, "g", messages={"m"})
        problems: list[tuple[str, str]] = []
    except JourneyInvalid as caught:
        problems = caught.problems
    assert [p.removeprefix("steps.") for p, m in problems if m.startswith("unreachable")] == unreachable
    assert [p.removeprefix("steps.") for p, m in problems if m.startswith("no way to an end")] == endless
    cycles = [m.split(": ", 1)[1].split(" could")[0].split(" -> ") for _, m in problems if m.startswith("a cycle")]
    assert bool(cycles) == bool(looping)
    for cycle in cycles:  # each reported cycle is a real one through steps that do not wait
        assert cycle[0] == cycle[-1] and set(cycle) <= looping
        assert all(b in _edges(steps[a]) for a, b in zip(cycle, cycle[1:], strict=False))
    assert set().union(*map(set, cycles)) <= looping
    assert len(problems) == len(unreachable) + len(endless) + len(cycles)
