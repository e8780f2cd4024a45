"""QR short links: the printed code decodes (zxing-cpp) to the short link, which redirects (302) to the landing
URL with its UTM tags and records a `page` event with context.campaign for the scanning device (cookie `ow_aid`);
a recipient's link carries the recipient's user id; a forged token gets 404 and records nothing."""

from __future__ import annotations

import io
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import zxingcpp
from fastapi.testclient import TestClient
from PIL import Image

from omniweave.activate import codes
from omniweave.activate.service.qr import qr_link
from omniweave.channels import links
from omniweave.collect.emit import emit
from omniweave.collect.loader import load_all
from omniweave.errors import InputError
from omniweave.identity.service.resolve import resolve
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.api.app import create_app

LANDING = "https://shop.example.com/spring?ref=poster"


@pytest.fixture
def app_runtime(tmp_path) -> Iterator[tuple[TestClient, Runtime]]:
    app = create_app(Settings(home=str(tmp_path / "home")))
    yield TestClient(app, follow_redirects=False), app.state.runtime


def scans(runtime: Runtime) -> list[dict]:
    return [orjson.loads(row.payload) for row in runtime.store.read(0) if orjson.loads(row.payload)["type"] == "page"]


def decode(image: bytes) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(Image.open(io.BytesIO(image)))]


def test_a_printed_qr_code_redirects_with_utm_and_records_the_scan(app_runtime) -> None:
    client, runtime = app_runtime
    link = qr_link(runtime, LANDING, "Spring Sale", "print", placement="poster-A3")
    assert link.url.startswith(runtime.settings.channels.public_url + "/q/")
    assert decode(codes.qr_image(link.url, "png")) == [link.url]
    path = urlsplit(link.url).path

    first = client.get(path)
    assert first.status_code == 302
    location = urlsplit(first.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "shop.example.com", "/spring")
    query = parse_qs(location.query)
    assert query == {
        "ref": ["poster"],
        "utm_source": ["print"],
        "utm_medium": ["print"],
        "utm_campaign": ["Spring Sale"],
        "utm_content": ["poster-A3"],
    }
    assert first.headers["location"] == link.landing_url
    cookie = first.cookies.get("ow_aid")
    assert cookie

    (event,) = scans(runtime)
    assert event["anonymousId"] == cookie and event.get("userId") is None
    assert event["context"]["campaign"] == {
        "source": "print",
        "medium": "print",
        "name": "Spring Sale",
        "content": "poster-A3",
    }
    assert event["properties"]["placement"] == "poster-A3"

    client.cookies.set("ow_aid", cookie)
    second = client.get(path)
    assert second.status_code == 302 and "set-cookie" not in second.headers
    assert [e["anonymousId"] for e in scans(runtime)] == [cookie, cookie]

    load_all(runtime.store, runtime.log)
    warehouse = runtime.warehouse()
    warehouse.table("events")
    rows = warehouse.rows("SELECT type, campaign_source, campaign_medium, campaign_name FROM events")
    page = {"type": "page", "campaign_source": "print", "campaign_medium": "print", "campaign_name": "Spring Sale"}
    assert rows == [page, page]


def test_a_letter_s_qr_code_ties_the_scanning_device_to_the_recipient(app_runtime) -> None:
    client, runtime = app_runtime
    identify = {"type": "identify", "messageId": "id-1", "userId": "C-100", "traits": {"email": "ann@example.com"}}
    emit(runtime.store, "crm", [identify])
    load_all(runtime.store, runtime.log)
    resolve(runtime, probabilistic=False)
    rows = runtime.warehouse().table("identities").to_pyarrow().to_pylist()
    person = next(row["person_id"] for row in rows if row["kind"] == "user_id" and row["value"] == "C-100")

    link = qr_link(runtime, LANDING, "Spring Letter", "letter", person_id=person, send_key="letter:1")
    assert link.user_id == "C-100"
    answer = client.get(urlsplit(link.url).path)
    assert answer.status_code == 302
    (event,) = scans(runtime)
    assert event["userId"] == "C-100" and event["anonymousId"] == answer.cookies.get("ow_aid")
    assert event["properties"]["person_id"] == person and event["properties"]["send_key"] == "letter:1"
    assert event["context"]["campaign"] == {"source": "letter", "medium": "letter", "name": "Spring Letter"}


def test_a_forged_or_altered_token_gets_404_and_records_nothing(app_runtime) -> None:
    client, runtime = app_runtime
    token = qr_link(runtime, LANDING, "Spring Sale", "tv", placement="ad-30s").token
    altered = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    click_token = links.sign(runtime, "c", {"t": LANDING, "s": "tv", "m": "tv", "c": "x"})  # another purpose
    other_key = links.sign(b"another key of sixteen+ bytes", "q", {"t": LANDING, "s": "tv", "m": "tv", "c": "x"})
    not_http = links.sign(runtime, "q", {"t": "javascript:alert(1)", "s": "tv", "m": "tv", "c": "x"})
    for bad in (altered, click_token, other_key, not_http, "x", "A" * 60, "%00"):
        answer = client.get(f"/q/{bad}")
        assert answer.status_code == 404, bad
        assert "location" not in answer.headers
    assert scans(runtime) == []
    assert client.get(f"/q/{token}").status_code == 302


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"medium": "radio"}, "medium"),
        ({"landing_url": "javascript:alert(1)"}, "landing_url"),
        ({"landing_url": "/relative"}, "landing_url"),
        ({"campaign": " "}, "campaign"),
        ({"placement": None}, "placement"),
        ({"placement": "x" * 300}, "placement"),
    ],
)
def test_bad_link_requests_name_the_field(runtime, kwargs: dict, field: str) -> None:
    request = {"landing_url": LANDING, "campaign": "Spring", "medium": "print", "placement": "p1", **kwargs}
    with pytest.raises(InputError) as caught:
        qr_link(runtime, **request)
    assert caught.value.field == field


def test_the_route_is_documented_and_any_token_gets_404_not_5xx(app_runtime) -> None:
    from urllib.parse import quote

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    client, runtime = app_runtime
    operation = client.get("/openapi.json").json()["paths"]["/q/{token}"]["get"]
    assert set(operation["responses"]) == {"302", "404"}

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.text(min_size=1, max_size=300))
    def check(token: str) -> None:
        answer = client.get("/q/" + quote(token, safe=""))
        assert answer.status_code == 404, (token, answer.status_code)

    check()
    assert scans(runtime) == []
