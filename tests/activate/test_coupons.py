"""Coupons: codes people can type (alphabet, check character caught errors), images a scanner reads (zxing-cpp),
pools and issuing on a real store (idempotent per send, 100,000 codes without a collision), redemption from the
event log (shared codes flagged, static codes never identity) and the loop closed: a code sent by e-mail and
redeemed at a till is credited to e-mail by attribution."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from omniweave.activate import codes
from omniweave.activate.coupons import (
    ALPHABET,
    check_character,
    format_code,
    is_valid_code,
    new_code,
    new_codes,
    normalize_code,
)
from omniweave.activate.service import coupons as service
from omniweave.channels.dispatch import Dispatcher
from omniweave.channels.fake import FakeChannel
from omniweave.channels.port import Message
from omniweave.collect.emit import emit
from omniweave.collect.loader import load_all
from omniweave.collect.service import import_file
from omniweave.errors import InputError
from omniweave.identity.service.resolve import resolve
from omniweave.measure.service.attribution import AttributionRequest, attribution_report
from omniweave.storage.ops.ledger import Ledger

bodies = st.text(alphabet=ALPHABET, min_size=1, max_size=24)


def decode(image: bytes) -> list[tuple[str, str]]:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(image)))
    return [(result.text, result.format.name) for result in found]


# --- codes ------------------------------------------------------------------------------------------------
def test_the_alphabet_has_no_look_alikes() -> None:
    assert len(ALPHABET) == len(set(ALPHABET)) == 25
    assert not set("0O1IL2Z5S8B") & set(ALPHABET)


@given(bodies)
def test_a_code_with_its_check_character_is_valid(body: str) -> None:
    code = body + check_character(body)
    assert is_valid_code(code)
    assert is_valid_code(format_code(code).lower())
    assert is_valid_code(" " + " - ".join(code) + " ")


@given(bodies, st.data())
def test_every_single_character_error_is_caught(body: str, data: st.DataObject) -> None:
    code = body + check_character(body)
    position = data.draw(st.integers(0, len(code) - 1))
    wrong = data.draw(st.sampled_from([c for c in ALPHABET if c != code[position]]))
    assert not is_valid_code(code[:position] + wrong + code[position + 1 :])


@given(bodies, st.data())
def test_every_adjacent_transposition_is_caught(body: str, data: st.DataObject) -> None:
    code = body + check_character(body)
    swaps = [i for i in range(len(code) - 1) if code[i] != code[i + 1]]
    if not swaps:
        return
    i = data.draw(st.sampled_from(swaps))
    assert not is_valid_code(code[:i] + code[i + 1] + code[i] + code[i + 2 :])


def test_every_single_error_and_swap_of_one_code_exhaustively() -> None:
    code = new_code(10, prefix="W")
    for i in range(len(code)):
        for c in ALPHABET:
            if c != code[i]:
                assert not is_valid_code(code[:i] + c + code[i + 1 :]), (code, i, c)
        if i + 1 < len(code) and code[i] != code[i + 1]:
            assert not is_valid_code(code[:i] + code[i + 1] + code[i] + code[i + 2 :])


def test_codes_have_the_prefix_the_length_and_read_in_groups() -> None:
    code = new_code(10, prefix="wx")
    assert code.startswith("WX") and len(code) == 13 and set(code) <= set(ALPHABET)
    assert is_valid_code(code, prefix="WX", length=10)
    assert not is_valid_code(code, prefix="WX", length=9)
    assert not is_valid_code(code, prefix="XW")
    assert format_code(code) == f"{code[:4]}-{code[4:8]}-{code[8:12]}-{code[12]}"
    assert normalize_code(" wx-" + code[2:].lower() + " ") == code
    assert not is_valid_code("") and not is_valid_code("A0B1") and not is_valid_code("!")


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: new_code(10, prefix="SO"), "prefix"),  # S and O are look-alikes, left out
        (lambda: new_code(3), "length"),
        (lambda: new_code(41), "length"),
        (lambda: check_character("AB0"), "code"),
    ],
)
def test_bad_code_parameters_name_the_field(call: Any, field: str) -> None:
    with pytest.raises(InputError) as caught:
        call()
    assert caught.value.field == field


def test_drawn_codes_are_random_and_valid() -> None:
    drawn = new_codes(5000, 10)
    assert len(set(drawn)) == 5000
    assert all(is_valid_code(code, length=10) for code in drawn)
    # every character is used at every position (a broken generator would pin some)
    for position in range(10):
        assert len({code[position] for code in drawn}) == 25


# --- images -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_code128_and_qr_images_of_a_code_decode_to_the_code(seed: int) -> None:
    code = new_codes(1, 6 + seed * 3, prefix="W" * (seed % 2))[0]
    assert decode(codes.barcode_image(code, "png")) == [(code, "Code128")]
    assert decode(codes.qr_image(code, "png")) == [(code, "QRCode")]


@pytest.mark.parametrize("code", ["99GAEV3DTYUH9FTCR36", "99AB-CD", "9ACD", "1234AB", "AB99CD", "99", "4X"])
def test_code128_keeps_leading_digit_pairs(code: str) -> None:
    # python-barcode read a leading "99" (a digit pair in charset C) as its switch symbol and dropped it
    assert decode(codes.barcode_image(code, "png")) == [(code, "Code128")]


def test_svg_images_are_svg_and_png_decodes_a_long_url() -> None:
    url = "https://shop.example.com/q/" + "x" * 200 + "?utm_source=print&utm_medium=print"
    assert decode(codes.qr_image(url, "png", error="h")) == [(url, "QRCode")]
    for image in (codes.qr_image(url, "svg"), codes.barcode_image("ABC123", "svg")):
        assert b"<svg" in image[:400]
    with pytest.raises(InputError, match="png or .svg"):
        codes.qr_image(url, "gif")
    with pytest.raises(InputError, match="ASCII"):
        codes.barcode_image("CAFÉ")


# --- pools and issuing ------------------------------------------------------------------------------------
def test_issuing_is_idempotent_per_send_and_records_the_send(runtime) -> None:
    service.create_pool(runtime, "spring", length=8, prefix="W", valid_days=30, campaign="Spring")
    first = service.issue(runtime, "spring", person_id="P1", send_key="k1", channel="email", message_name="offer")
    again = service.issue(runtime, "spring", person_id="P1", send_key="k1", channel="email", message_name="offer")
    other = service.issue(runtime, "spring", person_id="P1", send_key="k2", channel="sms")
    assert first.code == again.code != other.code
    assert is_valid_code(first.code, prefix="W", length=8)
    stored = service.find(runtime, format_code(first.code).lower())
    assert stored is not None
    assert (stored.person_id, stored.send_key, stored.channel, stored.campaign, stored.message_name) == (
        "P1",
        "k1",
        "email",
        "Spring",
        "offer",
    )
    assert stored.expires_at == pytest.approx(stored.issued_at + 30 * 86400)


def test_pool_errors_name_the_field(runtime) -> None:
    service.create_pool(runtime, "p")
    cases = [
        ({"name": "p"}, "name"),
        ({"name": "q", "kind": "random"}, "kind"),
        ({"name": "q", "valid_days": -1}, "valid_days"),
        ({"name": "q", "length": 2}, "length"),
        ({"name": "q", "prefix": "0O"}, "prefix"),
        ({"name": "q", "kind": "static"}, "static_code"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InputError) as caught:
            service.create_pool(runtime, **kwargs)
        assert caught.value.field == field, kwargs
    with pytest.raises(InputError, match="pools: p"):
        service.issue(runtime, "nope")


def test_a_hundred_thousand_codes_issue_without_a_collision(runtime) -> None:
    service.create_pool(runtime, "leaflet", length=10)
    service.issue(runtime, "leaflet", person_id="P1", send_key="k")
    done = service.issue_bulk(runtime, "leaflet", 100_000)
    issued = service.pool_codes(runtime, "leaflet")
    assert done.issued == 100_000
    assert len(issued) == len(set(issued)) == 100_001
    assert all(is_valid_code(code, length=10) for code in random.sample(issued, 1000))


def test_a_short_code_space_redraws_collisions_and_never_repeats(runtime) -> None:
    # 6 characters: 244 million codes; issue from a pool pre-filled with many codes so draws collide sometimes
    service.create_pool(runtime, "tiny", length=6)
    service.issue_bulk(runtime, "tiny", 20_000)
    done = service.issue_bulk(runtime, "tiny", 20_000)
    issued = service.pool_codes(runtime, "tiny")
    assert done.issued == 20_000 and len(issued) == len(set(issued)) == 40_000


# --- redemption -------------------------------------------------------------------------------------------
TILL_COLUMNS = ["transaction_id", "store_id", "till_id", "timestamp", "sku", "product_name", "category", "quantity"]
TILL_COLUMNS += ["unit_price", "line_discount", "coupon_code", "loyalty_card", "customer_number", "currency"]


def till_file(path: Path, receipts: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, TILL_COLUMNS)
        writer.writeheader()
        for n, receipt in enumerate(receipts):
            row = {
                "transaction_id": f"T{n}",
                "store_id": "S01",
                "till_id": "1",
                "sku": "SKU-1",
                "product_name": "Coat",
                "category": "outerwear",
                "quantity": "1",
                "unit_price": "80.00",
                "line_discount": "10.00",
                "currency": "EUR",
                **receipt,
            }
            writer.writerow(row)
    return path


def identify(runtime, *people: tuple[str, str]) -> dict[str, str]:
    """Customers known by number and e-mail; returns their person ids after resolve."""
    events = [
        {
            "type": "identify",
            "messageId": f"id-{number}",
            "userId": number,
            "timestamp": "2026-05-01T09:00:00Z",
            "traits": {"email": email},
        }
        for number, email in people
    ]
    emit(runtime.store, "crm", events)
    load_all(runtime.store, runtime.log)
    resolve(runtime, probabilistic=False)
    return persons_of(runtime, [number for number, _ in people])


def persons_of(runtime, user_ids: list[str]) -> dict[str, str]:
    rows = runtime.warehouse().table("identities").to_pyarrow().to_pylist()
    found = {row["value"]: row["person_id"] for row in rows if row["kind"] == "user_id"}
    return {user: found[user] for user in user_ids}


def test_a_code_sent_by_email_and_redeemed_at_the_till_is_credited_to_email(runtime, tmp_path) -> None:
    people = identify(runtime, ("C-100", "ann@example.com"))
    service.create_pool(runtime, "spring", length=10, valid_days=60, campaign="Spring Sale")
    key = "spring-offer:" + people["C-100"] + ":email"
    coupon = service.issue(
        runtime, "spring", person_id=people["C-100"], send_key=key, channel="email", message_name="spring-offer"
    )
    email = FakeChannel("email")
    message = Message(
        "email",
        "ann@example.com",
        {"subject": "20% off", "text": f"Show {coupon.display} at the till", "html": "<p>...</p>"},
        person_id=people["C-100"],
        campaign="Spring Sale",
        message_name="spring-offer",
    )
    sent = Dispatcher(Ledger(runtime.store.engine), {"email": email}).send(message, key)
    assert sent.status == "delivered" and email.delivered_keys() == [key]

    typed = format_code(coupon.code).lower().replace("-", " ")  # the cashier types it in lower case with spaces
    till = till_file(
        tmp_path / "till.csv",
        [{"timestamp": "2026-05-10T12:00:00Z", "coupon_code": typed, "customer_number": "C-100"}],
    )
    assert import_file(runtime, "till", till).rows_imported == 1
    load_all(runtime.store, runtime.log)
    resolve(runtime, probabilistic=False)

    done = service.redeem_from_log(runtime)
    assert (done.redeemed, done.shared, done.emitted, done.unknown) == (1, 0, 1, 0)
    stored = service.find(runtime, coupon.code)
    assert stored is not None and stored.redeemed_via == "store" and stored.redeemed_by == people["C-100"]
    assert not stored.shared
    again = service.redeem_from_log(runtime)  # a second run changes nothing
    assert (again.redeemed, again.emitted) == (0, 0)

    load_all(runtime.store, runtime.log)
    by_channel = attribution_report(runtime, AttributionRequest(models=("last_touch", "linear")))
    for result in by_channel.results:
        assert result.conversions == {"email": 1.0}, result.model
        assert result.value == {"email": pytest.approx(70.0)}
    by_campaign = attribution_report(runtime, AttributionRequest(models=("last_touch",), by="campaign"))
    assert by_campaign.results[0].conversions == {"Spring Sale": 1.0}


def test_a_code_redeemed_by_someone_else_is_flagged_shared(runtime, tmp_path) -> None:
    people = identify(runtime, ("C-100", "ann@example.com"), ("C-200", "bob@example.com"))
    service.create_pool(runtime, "spring", length=10)
    ann = service.issue(runtime, "spring", person_id=people["C-100"], send_key="k-ann", channel="email")
    mine = service.issue(runtime, "spring", person_id=people["C-200"], send_key="k-bob", channel="sms")
    till = till_file(
        tmp_path / "till.csv",
        [
            {"timestamp": "2026-05-10T12:00:00Z", "coupon_code": ann.code, "customer_number": "C-200"},
            {"timestamp": "2026-05-11T12:00:00Z", "coupon_code": mine.code, "customer_number": "C-200"},
            {"timestamp": "2026-05-12T12:00:00Z", "coupon_code": ann.code, "customer_number": "C-200"},
            {"timestamp": "2026-05-12T13:00:00Z", "coupon_code": "NOTOURS99", "customer_number": "C-200"},
        ],
    )
    import_file(runtime, "till", till)
    load_all(runtime.store, runtime.log)
    resolve(runtime, probabilistic=False)
    done = service.redeem_from_log(runtime)
    assert (done.redeemed, done.shared, done.already, done.unknown) == (2, 1, 1, 1)
    shared, own = service.find(runtime, ann.code), service.find(runtime, mine.code)
    assert shared is not None and shared.shared and shared.redeemed_by == people["C-200"]
    assert own is not None and not own.shared


def test_a_static_code_links_nobody(runtime, tmp_path) -> None:
    service.create_pool(runtime, "summer", kind="static", static_code="summer10")
    assert service.issue(runtime, "summer", person_id="P1").code == "SUMMER10"
    # two shoppers known only by their loyalty cards use the campaign-wide code at the till
    rows = [
        {"timestamp": "2026-05-10T12:00:00Z", "coupon_code": "SUMMER10", "loyalty_card": "LC-1"},
        {"timestamp": "2026-05-10T13:00:00Z", "coupon_code": "summer10", "loyalty_card": "LC-2"},
    ]
    import_file(runtime, "till", till_file(tmp_path / "till.csv", rows))
    load_all(runtime.store, runtime.log)
    resolve(runtime, probabilistic=False)
    identities = runtime.warehouse().table("identities").to_pyarrow().to_pylist()
    cards = {row["value"]: row["person_id"] for row in identities if row["kind"] == "loyalty_card"}
    assert cards["LC1"] != cards["LC2"]
    assert not [row for row in identities if row["kind"] == "coupon_code"]
    done = service.redeem_from_log(runtime)
    assert (done.static, done.redeemed, done.emitted) == (2, 0, 0)


# --- the command line -------------------------------------------------------------------------------------
def test_the_coupon_and_qr_commands(tmp_path) -> None:
    from typer.testing import CliRunner

    from omniweave.shells.cli.main import app

    home = ["--home", str(tmp_path / "home")]
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, [*home, *args])
        assert result.exit_code == code, result.output
        return result.output

    run("coupons", "pool", "create", "spring", "--unique", "--length", "8", "--valid-days", "30", "--campaign", "S")
    shown = run("coupons", "issue", "spring", "--person", "P1", "--send-key", "k1", "--out", str(tmp_path / "c.png"))
    code = shown.split()[0]
    assert is_valid_code(code, length=8)
    assert decode((tmp_path / "c.png").read_bytes()) == [(normalize_code(code), "QRCode")]
    assert decode((tmp_path / "c-barcode.png").read_bytes()) == [(normalize_code(code), "Code128")]
    assert run("coupons", "issue", "spring", "--person", "P1", "--send-key", "k1").split()[0] == code
    assert "issued 500 codes" in run(
        "coupons", "issue-bulk", "spring", "--count", "500", "--out", str(tmp_path / "c.csv")
    )
    assert len((tmp_path / "c.csv").read_text().splitlines()) == 502  # header, 1 + 500 codes
    assert '"person_id": "P1"' in run("coupons", "show", code.lower(), "--format", "json")
    run("coupons", "show", "NOPE", code=1)
    assert "0 codes redeemed" in run("coupons", "redeem")
    assert "prefix" in run("coupons", "pool", "create", "bad", "--prefix", "0", code=2)
    link = run(
        "qr",
        "make",
        "https://shop.example.com/",
        "--campaign",
        "S",
        "--medium",
        "tv",
        "--placement",
        "ad30",
        "--out",
        str(tmp_path / "q.png"),
    ).split()[0]
    assert "/q/" in link and decode((tmp_path / "q.png").read_bytes()) == [(link, "QRCode")]


def test_pools_issue_and_bulk_issue_on_both_stores(opstore_url: str, tmp_path) -> None:
    from omniweave.runtime import Runtime
    from omniweave.settings import Settings

    rt = Runtime(Settings(home=str(tmp_path / "home"), database_url=opstore_url))
    try:
        service.create_pool(rt, "p", length=6)
        first = service.issue(rt, "p", person_id="P1", send_key="k1", channel="email")
        assert service.issue(rt, "p", person_id="P1", send_key="k1").code == first.code
        assert service.issue_bulk(rt, "p", 25_000).issued == 25_000
        again = service.issue_bulk(rt, "p", 5_000)  # counted right with codes already in the pool
        issued = service.pool_codes(rt, "p")
        assert again.issued == 5_000 and len(issued) == len(set(issued)) == 30_001
    finally:
        rt.close()


def test_online_coupon_applied_and_the_coupons_importer_redeem_with_their_channel(runtime, tmp_path) -> None:
    service.create_pool(runtime, "web", length=8)
    online = service.issue(runtime, "web", person_id="u-1", send_key="k1", channel="push", campaign="App Push")
    imported = service.issue(runtime, "web", person_id="u-2", send_key="k2", channel="sms")
    applied = {
        "type": "track",
        "event": "Coupon Applied",
        "messageId": "shop-1",
        "userId": "u-1",
        "timestamp": "2026-05-10T12:00:00Z",
        "properties": {"coupon": format_code(online.code).lower(), "channel": "web", "order_id": "o1"},
    }
    emit(runtime.store, "shop", [applied])
    path = tmp_path / "coupons.csv"
    path.write_text(
        "redemption_id,coupon_code,timestamp,redeemed_channel,email\n"
        f"R1,{imported.code},2026-05-11T12:00:00Z,app,bob@example.com\n"
    )
    assert import_file(runtime, "coupons", path).rows_imported == 1
    load_all(runtime.store, runtime.log)
    done = service.redeem_from_log(runtime)  # no resolve yet: the redeemer is the event's user id
    assert (done.redeemed, done.shared, done.emitted) == (2, 0, 2)
    first, second = service.find(runtime, online.code), service.find(runtime, imported.code)
    assert first is not None and (first.redeemed_via, first.redeemed_by) == ("web", "u-1")
    assert second is not None and second.redeemed_via == "app"
    load_all(runtime.store, runtime.log)
    warehouse = runtime.warehouse()
    warehouse.table("events")
    rows = warehouse.rows(
        "SELECT user_id, channel, timestamp, json_extract_string(properties, '$.send_key') AS send_key "
        "FROM events WHERE event = 'Coupon Redeemed' ORDER BY timestamp"
    )
    assert [(r["user_id"], r["channel"], r["send_key"]) for r in rows][0] == ("u-1", "push", "k1")
    assert rows[1]["channel"] == "sms" and rows[1]["send_key"] == "k2"
