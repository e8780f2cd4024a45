"""SMS double opt-in end to end: the confirmation text, then the person's YES through the signed inbound webhook."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from omniweave.channels.sms.fake import FakeTwilio
from omniweave.channels.sms.service import messaging_channel
from omniweave.forms import service as F
from omniweave.runtime import Runtime
from omniweave.settings import load_settings
from omniweave.shells.api.app import create_app
from omniweave.storage.ops.tables import consent_history
from tests.forms.conftest import NEWSLETTER, write_home

PUBLIC = "http://testserver"


def test_yes_by_sms_confirms_the_signup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTwilio()
    monkeypatch.setenv("OMNIWEAVE_TWILIO_AUTH_TOKEN", fake.auth_token)
    form = copy.deepcopy(NEWSLETTER)
    form["purposes"] = [{"name": "sms", "wording": "Text me offers", "confirm": "sms"}]
    home = tmp_path / "home"
    write_home(home, 2525, PUBLIC, [form])
    with (home / "omniweave.toml").open("a", encoding="utf-8") as toml:
        toml.write(
            f'\n[channels.sms]\nenabled = true\naccount_sid = "{fake.account_sid}"\nfrom_number = "+15005550006"\n'
        )
    runtime = Runtime(load_settings(home=str(home)))
    try:
        sms = messaging_channel(runtime, "sms", fake=True)
        stamp = F.render_stamp(runtime, "newsletter", now=time.time() - 5)
        answers = {"email": "fy@example.com", "phone": "07911 123456", "consent": ["sms"], "started": stamp}
        result = F.submit(runtime, F.SubmitRequest("newsletter", answers), channels={"sms": sms})
        assert result.pending == ("sms",)
        with TestClient(create_app(runtime.settings), base_url=PUBLIC) as client:
            url = f"{PUBLIC}/v1/channels/sms/inbound"
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            maybe, signature = fake.inbound(url, "+447911123456", "+15005550006", "maybe later")
            headers["X-Twilio-Signature"] = signature
            assert (
                client.post(
                    "/v1/channels/sms/inbound", content=str(httpx.QueryParams(maybe)), headers=headers
                ).status_code
                == 200
            )
            with runtime.store.engine.connect() as conn:
                assert conn.execute(sa.select(sa.func.count()).select_from(consent_history)).scalar_one() == 0
            yes, headers["X-Twilio-Signature"] = fake.inbound(url, "+447911123456", "+15005550006", "Yes")
            assert (
                client.post(
                    "/v1/channels/sms/inbound", content=str(httpx.QueryParams(yes)), headers=headers
                ).status_code
                == 200
            )
        with runtime.store.engine.connect() as conn:
            rows = conn.execute(sa.select(consent_history)).all()
        assert [(r.purpose, r.kind, r.granted) for r in rows] == [("sms", "phone", True)]
        proof = F.evidence(runtime, rows[0].reference)
        assert proof.confirmed_via == "sms" and [p["wording"] for p in proof.purposes] == ["Text me offers"]
    finally:
        runtime.close()
