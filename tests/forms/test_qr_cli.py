"""In store and in print: a poster's QR code opens the form, the sign-up is attributed to the poster in the
KPIs (e-mail sign-ups by placement, online vs in store); and the `omniweave forms` commands."""

from __future__ import annotations

import copy
import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
import zxingcpp
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from omniweave.collect.loader import load_all
from omniweave.measure.service.kpis import kpi_table
from omniweave.runtime import Runtime
from omniweave.shells.api.app import create_app
from omniweave.shells.cli.main import app as cli
from omniweave.storage.ops.tables import form_signups
from tests.forms.conftest import NEWSLETTER, Mailbox


@pytest.fixture
def client(forms_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(forms_runtime.settings), follow_redirects=False) as c:
        yield c


def _run(runtime: Runtime, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--home", runtime.settings.home, *args])
    return result.exit_code, result.output


def _sign_up(client: TestClient, path: str, email: str) -> None:
    page = client.get(path).text
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    action = re.search(r'<form method="post" action="([^"]+)"', page)
    assert action
    answer = client.post(action.group(1).replace("&amp;", "&"), data={**hidden, "email": email, "consent": "email"})
    assert answer.status_code == 303, answer.text


def _confirm(client: TestClient, box: Mailbox, email: str) -> None:
    assert client.post(box.confirm_link(email).replace("http://testserver", "")).status_code == 200


def test_a_poster_qr_code_opens_the_form_and_the_kpis_credit_the_poster(
    client: TestClient, forms_runtime: Runtime, mailbox: tuple[Mailbox, int], tmp_path: Path
) -> None:
    runtime, box = forms_runtime, mailbox[0]
    out = tmp_path / "poster.png"
    code, printed = _run(runtime, "forms", "qr", "newsletter", "--placement", "poster", "-o", str(out))
    assert code == 0, printed
    [url] = [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(out.read_bytes())))]
    assert url == "http://testserver/f/newsletter?placement=poster" and url in printed
    svg = tmp_path / "shelf.svg"
    assert _run(runtime, "forms", "qr", "newsletter", "--placement", "shelf", "-o", str(svg))[0] == 0
    assert svg.read_text().lstrip().startswith("<?xml")

    _sign_up(client, url.replace("http://testserver", ""), "ann@example.com")
    _sign_up(client, "/f/newsletter?placement=poster", "bo@example.com")
    _sign_up(client, "/f/newsletter", "cy@example.com")
    _sign_up(client, "/f/newsletter?placement=receipt", "di@example.com")  # never confirmed: no sign-up
    for email in ("ann@example.com", "bo@example.com", "cy@example.com"):
        _confirm(client, box, email)
    with runtime.store.engine.connect() as conn:
        rows = conn.execute(sa.select(form_signups.c.placement, form_signups.c.status)).all()
    expected = Counter(placement for placement, status in rows if status == "confirmed")
    assert expected == {"poster": 2, "web": 1}

    load_all(runtime.store, runtime.log)
    by_placement = kpi_table(runtime, period="month", by="placement", kpis=["email_signups"]).to_pylist()
    assert {r["dimension_value"]: r["value"] for r in by_placement} == {k: float(v) for k, v in expected.items()}
    by_channel = kpi_table(runtime, period="month", by="channel", kpis=["email_signups"]).to_pylist()
    assert {r["dimension_value"]: r["value"] for r in by_channel} == {"store": 2.0, "web": 1.0}

    code, listed = _run(runtime, "forms", "list", "--format", "json")
    assert code == 0
    [row] = json.loads(listed)
    assert row["signups"] == {"pending": 1, "confirmed": 3, "expired": 0}


def test_validate_prints_every_problem_and_fails(forms_runtime: Runtime) -> None:
    runtime = forms_runtime
    assert _run(runtime, "forms", "validate")[0] == 0
    bad = copy.deepcopy(NEWSLETTER)
    bad["name"] = "broken"
    bad["fields"][0]["type"] = "mail"
    bad["coupon_pool"] = "NOPE"
    bad["purposes"][1]["name"] = "telepathy"
    folder = Path(runtime.settings.home) / "forms"
    (folder / "broken.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    code, output = _run(runtime, "forms", "validate")
    assert code == 1
    assert "ok       newsletter" in output
    assert "fields[0].type" in output and "purposes[1].name" in output and "'telepathy'" in output
    pool = copy.deepcopy(NEWSLETTER)
    pool["coupon_pool"] = "NOPE"
    (folder / "newsletter.yaml").write_text(yaml.safe_dump(pool), encoding="utf-8")
    code, output = _run(runtime, "forms", "validate")
    assert code == 1 and "no coupon pool 'NOPE'" in output


def test_expire_and_evidence_commands(client: TestClient, forms_runtime: Runtime, mailbox: tuple[Mailbox, int]) -> None:
    runtime, box = forms_runtime, mailbox[0]
    _sign_up(client, "/f/newsletter?placement=tv", "ed@example.com")
    assert _run(runtime, "forms", "expire")[1].strip() == "expired 0 unconfirmed sign-up(s)"
    _confirm(client, box, "ed@example.com")
    with runtime.store.engine.connect() as conn:
        signup_id = conn.execute(sa.select(form_signups.c.id)).scalar_one()
    code, output = _run(runtime, "forms", "evidence", f"form:{signup_id}", "--format", "json")
    assert code == 0
    proof = json.loads(output)
    assert proof["placement"] == "tv" and proof["confirmed_via"] == "email" and proof["submitted_ip"] == "testclient"
    assert proof["purposes"] == [{"name": "email", "confirm": "email", "wording": "E-mail me news and offers"}]
