"""Direct mail: batches printed as PDF + CSV under the home, every QR code decoded from the PDF itself."""

from __future__ import annotations

import csv
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import zxingcpp
from pypdf import PdfReader

from omniweave.channels.dispatch import Dispatcher
from omniweave.channels.port import Delivered, Message, Terminal
from omniweave.channels.print import PrintChannel
from omniweave.channels.print.fake import FakeMailHouse
from omniweave.channels.print.letter import MAX_TEXT_LINES
from omniweave.channels.print.service import flush_print_batch, open_print_channel, print_deliveries
from omniweave.errors import InputError
from omniweave.storage.ops.ledger import Ledger

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC).timestamp()
TEXT = "Dear Ann,\n\nSpring is here: bring this letter to any of our shops for 20% off.\nSee you soon!"


def letter(n: int, qr: bool = True, **content: object) -> Message:
    body: dict[str, object] = {
        "address": [f"Ann Example {n}", f"{n} High Street", "Bristol", "BS1 4DJ"],
        "text": TEXT,
    }
    if qr:
        body["qr_url"] = f"https://shop.example/l/spring?utm_source=letter&utm_medium=direct_mail&t=tok{n}é"
    body.update(content)
    return Message("print", f"{n} High Street, Bristol BS1 4DJ", body, person_id=f"P{n}", campaign="spring")


def qr_codes(pdf: Path) -> list[list[str]]:
    """Per page, the texts of every QR code found in the page's images (taken out of the PDF as they are)."""
    pages = []
    for page in PdfReader(str(pdf)).pages:
        found = []
        for image in page.images:
            found += [
                hit.text for hit in zxingcpp.read_barcodes(image.image) if hit.format == zxingcpp.BarcodeFormat.QRCode
            ]
        pages.append(found)
    return pages


def test_a_batch_prints_one_page_per_letter_a_matching_csv_and_qr_codes_that_decode(runtime):
    channel = open_print_channel(runtime, clock=lambda: NOW)
    outcomes = [channel.send(letter(n, qr=n != 2), f"send-{n}") for n in (1, 2, 3)]
    assert outcomes == [Delivered(f"letters-2026-03-02:{n}") for n in (1, 2, 3)]
    assert channel.open_batches() == ["letters-2026-03-02"]
    printed = flush_print_batch(runtime, "letters-2026-03-02", clock=lambda: NOW)
    folder = Path(runtime.settings.home) / "print"
    assert Path(printed.pdf) == folder / "letters-2026-03-02.pdf" and Path(printed.csv).parent == folder
    assert printed.drop_date == "2026-03-05"  # printed + drop_days (3)
    reader = PdfReader(printed.pdf)
    assert len(reader.pages) == 3
    for n, page in zip((1, 2, 3), reader.pages, strict=True):
        text = page.extract_text()
        assert f"Ann Example {n}" in text and f"{n} High Street" in text and "20% off" in text
    with open(printed.csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["n"], r["page"], r["recipient"], r["send_key"], r["drop_date"]) for r in rows] == [
        (str(n), str(n), f"P{n}", f"send-{n}", "2026-03-05") for n in (1, 2, 3)
    ]
    assert [r["address_1"] for r in rows] == ["Ann Example 1", "Ann Example 2", "Ann Example 3"]
    assert rows[0]["address_4"] == "BS1 4DJ" and rows[0]["address_5"] == ""
    assert qr_codes(Path(printed.pdf)) == [
        [str(letter(1).content["qr_url"])],
        [],
        [str(letter(3).content["qr_url"])],
    ]
    assert channel.open_batches() == [] and FakeMailHouse().receive(printed) == 3


def test_same_key_is_the_same_letter_and_a_printed_batch_takes_no_more(runtime):
    channel = open_print_channel(runtime, clock=lambda: NOW)
    assert channel.send(letter(1), "k1") == channel.send(letter(1), "k1") == Delivered("letters-2026-03-02:1")
    assert channel.flush("letters-2026-03-02").letters[0].send_key == "k1"
    assert channel.flush("letters-2026-03-02").printed_at == NOW  # flushing again changes nothing
    assert channel.send(letter(2), "k2") == Delivered("letters-2026-03-02-2:1")  # the day's next batch
    assert channel.send(letter(3, batch="tv-insert"), "k3") == Delivered("tv-insert:1")
    channel.flush("tv-insert")
    refused = channel.send(letter(4, batch="tv-insert"), "k4")
    assert isinstance(refused, Terminal) and "already printed" in refused.reason
    with pytest.raises(InputError, match="no letters"):
        channel.flush("empty")
    with pytest.raises(InputError, match="batch"):
        channel.send(letter(5, batch="../etc"), "k5")


@pytest.mark.parametrize(
    ("content", "field", "match"),
    [
        ({"address": ["Only one line"]}, "content.address", "2 to 6"),
        ({"address": [f"line {i}" for i in range(7)]}, "content.address", "2 to 6"),
        ({"address": ["x" * 51, "Bristol"]}, "content.address", "line 1 has 51"),
        ({"address": {"street": "1 High St"}}, "content.address", "list of lines"),
        ({"text": ""}, "content.text", "needs content.text"),
        ({"text": "\n".join(["a line"] * (MAX_TEXT_LINES + 1))}, "content.text", "one page holds"),
        ({"qr_url": "javascript:alert(1)"}, "content.qr_url", "http"),
    ],
)
def test_letters_that_cannot_be_printed_are_refused_when_sent(tmp_path, content, field, match):
    channel = PrintChannel(tmp_path, clock=lambda: NOW)
    with pytest.raises(InputError, match=match) as info:
        channel.send(letter(1, **content), "k")
    assert info.value.field == field
    assert channel.open_batches() == []


def test_letters_are_delivered_on_their_drop_date_reported_once(runtime):
    ledger = Ledger(runtime.store.engine)
    d = Dispatcher(ledger, {"print": open_print_channel(runtime, clock=lambda: NOW)}, rng=random.Random(0))
    results = [d.send(letter(n), f"letter-{n}") for n in (1, 2)]
    assert [(r.status, r.provider_id) for r in results] == [
        ("delivered", "letters-2026-03-02:1"),
        ("delivered", "letters-2026-03-02:2"),
    ]
    flush_print_batch(runtime, "letters-2026-03-02", clock=lambda: NOW)
    drop = date(2026, 3, 5)
    assert print_deliveries(runtime, drop - timedelta(days=1)).letters == 0
    first = print_deliveries(runtime, drop)
    assert first.to_dict() == {"batches": ["letters-2026-03-02"], "letters": 2, "new_events": 2}
    assert print_deliveries(runtime, drop + timedelta(days=7)).new_events == 0  # once only
    events = [orjson.loads(row.payload) for row in runtime.store.read(0)]
    assert [e["event"] for e in events] == ["Letter Delivered", "Letter Delivered"]
    props = events[0]["properties"]
    assert props["send_key"] == "letter-1" and props["person_id"] == "P1" and props["channel"] == "print"
    assert props["campaign"] == "spring" and props["drop_date"] == "2026-03-05"
    assert events[0]["timestamp"].startswith("2026-03-05T00:00:00")
