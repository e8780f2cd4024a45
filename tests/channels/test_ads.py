"""Ad audiences as a channel: hashed keys only, files in the platforms' layouts, uploads to a real local API."""

from __future__ import annotations

import csv
import hashlib
import random
from pathlib import Path

import orjson
import pytest

from omniweave.channels.ads import FileAudienceSync, HttpAudienceSync, audience_message, key_for
from omniweave.channels.ads.fake import FakeAudienceApi
from omniweave.channels.ads.service import open_ads_channel
from omniweave.channels.dispatch import Dispatcher
from omniweave.channels.port import Delivered, Message, Terminal, Transient
from omniweave.errors import ConfigError, InputError
from omniweave.runtime import Runtime
from omniweave.settings import AdsChannelSettings, ChannelsSettings, Settings, load_settings
from omniweave.storage.ops.ledger import Ledger
from tests.channels.local_http import LocalHTTP, LocalRequest

ANN = {"email": [" John.Doe@Example.COM "], "phone": ["+44 (0)20 7183 8750"], "device_id": ["AB12-CD34"]}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_keys_are_normalised_per_platform_and_hashed_before_the_ledger():
    assert key_for("email", " John.Doe@Example.COM ", "google") == sha("john.doe@example.com")
    assert key_for("phone", "+44 (0)20 7183 8750", "google") == sha("+442071838750")
    assert key_for("phone", "+44 (0)20 7183 8750", "meta") == sha("442071838750")
    assert key_for("device_id", "AB12-CD34", "meta") == "ab12-cd34"
    message = audience_message("meta", "spring-lapsed", "add", {**ANN, "email": [*ANN["email"], "test@x.com", "nope"]})
    text = orjson.dumps(message.content).decode()
    assert "john" not in text.lower() and "7183" not in text
    assert message.content["keys"] == [
        {"kind": "email", "value": sha("john.doe@example.com")},
        {"kind": "phone", "value": sha("442071838750")},
        {"kind": "device_id", "value": "ab12-cd34"},
    ]
    with pytest.raises(InputError, match="no usable"):
        audience_message("google", "a", "add", {"email": ["not-an-email"]})
    with pytest.raises(InputError, match="op"):
        audience_message("google", "a", "replace", ANN)
    with pytest.raises(InputError, match="audience name"):
        audience_message("google", "../x", "add", ANN)


def test_plaintext_keys_are_refused_by_the_adapter(tmp_path):
    sync = FileAudienceSync(tmp_path)
    plain = Message("ads", "aud", {"platform": "google", "op": "add", "keys": [{"kind": "email", "value": "a@b.com"}]})
    with pytest.raises(InputError) as info:
        sync.send(plain, "k")
    assert info.value.field == "content.keys[0]" and "SHA-256" in str(info.value)
    assert list(tmp_path.rglob("*.csv")) == []


def test_adds_and_removes_land_in_the_platform_files_through_the_dispatcher(runtime):
    d = Dispatcher(Ledger(runtime.store.engine), {"ads": open_ads_channel(runtime)}, rng=random.Random(0))
    bob = {"email": ["bob@example.org"]}
    sends = [
        (audience_message("google", "lapsed", "add", ANN, person_id="P1"), "j1:add:P1"),
        (audience_message("google", "lapsed", "add", bob, person_id="P2"), "j1:add:P2"),
        (audience_message("google", "lapsed", "remove", bob, person_id="P2"), "j1:remove:P2"),
        (audience_message("meta", "lapsed", "add", ANN, person_id="P1"), "j1:meta:P1"),
        (audience_message("google", "lapsed", "add", ANN, person_id="P1"), "j1:add:P1"),  # a replay: no 2nd row
    ]
    results = [d.send(message, key) for message, key in sends]
    assert [r.status for r in results] == ["delivered"] * 5
    assert results[0].provider_id == "google:lapsed-adds.csv+lapsed-mobile-ids-adds.csv"
    root = runtime.settings.home + "/audiences"

    def rows(path: str) -> list[list[str]]:
        with open(f"{root}/{path}", newline="", encoding="utf-8") as handle:
            return list(csv.reader(handle))

    assert rows("google/lapsed-adds.csv") == [
        ["Email", "Phone"],
        [sha("john.doe@example.com"), ""],
        ["", sha("+442071838750")],
        [sha("bob@example.org"), ""],
    ]
    assert rows("google/lapsed-mobile-ids-adds.csv") == [["Mobile Device ID"], ["ab12-cd34"]]
    assert rows("google/lapsed-removes.csv") == [["Email", "Phone"], [sha("bob@example.org"), ""]]
    assert rows("meta/lapsed-adds.csv")[0] == ["email", "phone", "madid"]
    assert ["", sha("442071838750"), ""] in rows("meta/lapsed-adds.csv")
    for path in Path(root).rglob("*.csv"):
        text = path.read_text()
        assert "@" not in text and "7183" not in text  # no plaintext anywhere


class AudienceApi:
    """A Meta-style audience API on loopback: checks the token and keeps members; scripted failures first."""

    def __init__(self, token: str = "tok-1") -> None:
        self.token = token
        self.script: list[tuple[int, dict[str, str]]] = []
        self.members: dict[str, set[str]] = {}

    def __call__(self, request: LocalRequest) -> tuple[int, dict[str, str], bytes]:
        if request.header("Authorization") != f"Bearer {self.token}":
            return 401, {"Content-Type": "application/json"}, b'{"error": {"code": 190}}'
        if self.script:
            status, headers = self.script.pop(0)
            return status, headers, b'{"error": {"code": 2}}'
        audience = request.path.split("/")[-2]
        body = orjson.loads(request.body)
        assert body["payload"]["schema"][0] in ("EMAIL_SHA256", "PHONE_SHA256", "MADID")
        first = next(cell for cell in body["payload"]["data"][0] if cell)
        target = self.members.setdefault(audience, set())
        (target.add if request.method == "POST" else target.discard)(first)
        return 200, {"Content-Type": "application/json"}, orjson.dumps({"audience_id": audience, "num_received": 1})


def test_uploads_to_a_real_local_api_retry_and_remove(runtime):
    api = AudienceApi()
    api.script = [(503, {}), (429, {"Retry-After": "5"})]
    now = [1_000.0]
    with LocalHTTP(api) as server:
        sync = HttpAudienceSync(server.url + "/v19.0", "tok-1")
        d = Dispatcher(Ledger(runtime.store.engine), {"ads": sync}, clock=lambda: now[0], rng=random.Random(0))
        assert d.send(audience_message("meta", "vip", "add", ANN), "a1").status == "retrying"

        def sleep(seconds: float) -> None:
            now[0] += seconds

        d.drain(timeout=600, sleep=sleep)
        assert (
            d.send(audience_message("meta", "vip", "add", {"email": ["bob@example.org"]}), "a2").status == "delivered"
        )
        assert d.send(audience_message("meta", "vip", "remove", ANN), "r1").status == "delivered"
        paths = [(r.method, r.path) for r in server.requests]
        refused = HttpAudienceSync(server.url, "wrong").send(audience_message("meta", "vip", "add", ANN), "x")
    assert api.members == {"vip": {sha("bob@example.org")}}
    assert paths[-1] == ("DELETE", "/v19.0/vip/users") and paths[0] == ("POST", "/v19.0/vip/users")
    assert len(paths) == 5  # 503, 429, then the add; bob; the removal
    assert isinstance(refused, Terminal) and "401" in refused.reason


def test_the_shipped_fake_api_and_the_settings():
    fake = FakeAudienceApi("t", script=[500])
    sync = HttpAudienceSync("https://graph.example.invalid/v19.0", "t", transport=fake.transport())
    add = audience_message("meta", "vip", "add", ANN)
    assert isinstance(sync.send(add, "k1"), Transient)
    assert isinstance(sync.send(add, "k1"), Delivered) and isinstance(sync.send(add, "k1"), Delivered)
    assert fake.members == {"vip": {sha("john.doe@example.com")}}
    assert isinstance(sync.send(audience_message("meta", "vip", "remove", ANN), "k2"), Delivered)
    assert fake.members == {"vip": set()}
    with pytest.raises(ConfigError):
        HttpAudienceSync("ftp://x", "t")
    with pytest.raises(ConfigError):
        HttpAudienceSync("https://x", "")


def test_ads_settings(tmp_path, monkeypatch):
    (tmp_path / "omniweave.toml").write_text('[channels.ads]\nmode = "carrier-pigeon"\n')
    with pytest.raises(ConfigError, match="mode must be file or http"):
        load_settings(config_file=tmp_path / "omniweave.toml", home=str(tmp_path / "h"))
    ads = AdsChannelSettings(mode="http", api_base="https://graph.example.invalid/v19.0")
    runtime = Runtime(Settings(home=str(tmp_path / "h2"), channels=ChannelsSettings(ads=ads)))
    try:
        monkeypatch.delenv("OMNIWEAVE_ADS_ACCESS_TOKEN", raising=False)
        with pytest.raises(ConfigError, match="OMNIWEAVE_ADS_ACCESS_TOKEN"):
            open_ads_channel(runtime)
        monkeypatch.setenv("OMNIWEAVE_ADS_ACCESS_TOKEN", "t")
        assert isinstance(open_ads_channel(runtime), HttpAudienceSync)
    finally:
        runtime.close()
