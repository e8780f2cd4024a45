"""The e-mail channel end to end: the real SMTP adapter against an aiosmtpd server on loopback, the
dispatcher and ledger on a real store, the link endpoints of the real app, events in the inbox."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import random
import re
import ssl
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from fastapi.testclient import TestClient

from omniweave.channels import links, service
from omniweave.channels.email import EmailChannel, OutboxTransport, SmtpTransport, message_id
from omniweave.channels.email.adapter import SmtpPool
from omniweave.channels.email.dsn import parse_dsn
from omniweave.channels.port import Delivered, Message, Terminal, Transient
from omniweave.channels.retry import RetryPolicy
from omniweave.errors import InputError
from omniweave.runtime import Runtime
from omniweave.settings import ChannelsSettings, EmailChannelSettings, Settings
from omniweave.shells.api.app import create_app
from omniweave.storage.ops.ledger import Ledger
from tests.conftest import free_port

PUBLIC = "https://news.example.com"


# --- a real SMTP server on loopback ------------------------------------------------------------------


@dataclass
class Mailbox:
    """aiosmtpd handler: keeps what it accepts; hard@… gets 550 at RCPT, soft@… 451."""

    messages: list[EmailMessage] = field(default_factory=list)
    rcpt_calls: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.rcpt_calls.append(address)
        local = address.split("@", 1)[0].lower()
        if local == "hard":
            return "550 5.1.1 <hard@example.org>: no such user"
        if local == "soft":
            return "451 4.2.0 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content or envelope.content, policy=default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 2.0.0 queued"


def start(handler: Mailbox, **kwargs: Any) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    controller = start(box)
    yield box, controller.port
    controller.stop()


@dataclass
class Cert:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for 127.0.0.1, made with `cryptography`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Cert(folder / "cert.pem", folder / "key.pem")


# --- the world: settings pointing at the server, the app, a fake clock --------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def email_settings(tmp_path: Path, port: int, **email: Any) -> Settings:
    section = EmailChannelSettings(
        enabled=True,
        host="127.0.0.1",
        port=port,
        security="plain",
        from_address="shop@example.com",
        from_name="The Shop",
        reply_to="help@example.com",
        unsubscribe_mailto="unsubscribe@example.com",
        timeout_seconds=5.0,
    )
    return Settings(
        home=str(tmp_path / "home"),
        channels=ChannelsSettings(public_url=PUBLIC, email=replace(section, **email)),
    )


@pytest.fixture
def world(tmp_path: Path, smtp: tuple[Mailbox, int]) -> Iterator[tuple[Runtime, Mailbox, TestClient]]:
    box, port = smtp
    rt = Runtime(email_settings(tmp_path, port))
    client = TestClient(create_app(rt.settings), follow_redirects=False)
    yield rt, box, client
    rt.close()


def mail(to: str = "ann@example.org", **content: str) -> Message:
    body = {
        "subject": "Spring sale: 20% off",
        "html": (
            "<html><body><h1>Hello Ann</h1>"
            '<p><a href="https://shop.example/sale?utm_source=email&amp;x=1">Shop the sale</a> or '
            "<a href='http://shop.example/stores'>find a store</a>.</p>"
            '<p><a href="[[unsubscribe_url]]">Unsubscribe</a></p></body></html>'
        ),
        "text": "Hello Ann\nShop the sale: https://shop.example/sale\n",
        **content,
    }
    return Message("email", to, body, person_id="P1", campaign="spring-sale", message_name="sale-1")


def events(runtime: Runtime, name: str | None = None) -> list[dict[str, Any]]:
    found = [orjson.loads(r.payload) for r in runtime.store.read(0)]
    return [e for e in found if name is None or e["event"] == name]


def tracked_links(html: str) -> list[str]:
    return re.findall(r'href=["\'](' + re.escape(PUBLIC) + r'/c/[^"\']+)["\']', html)


def path_of(url: str) -> str:
    assert url.startswith(PUBLIC)
    return url[len(PUBLIC) :]


# --- the message on the wire ---------------------------------------------------------------------------


def test_the_mail_received_has_rfc8058_headers_a_key_derived_message_id_and_both_parts(world):
    runtime, box, _ = world
    channels = service.open_channels(runtime)
    d = service.dispatcher_for(runtime, channels)
    result = d.send(mail(), "journey:spring:email1:P1")
    assert result.status == "delivered", result
    (received,) = box.messages
    expected_id = message_id("journey:spring:email1:P1", "shop@example.com")
    assert received["Message-ID"] == expected_id == "<journey=3Aspring=3Aemail1=3AP1@example.com>"
    assert result.provider_id == expected_id
    unsubscribe = str(received["List-Unsubscribe"])
    uris = re.findall(r"<([^>]+)>", unsubscribe)
    assert uris[0].startswith(f"{PUBLIC}/u/") and uris[1] == "mailto:unsubscribe@example.com?subject=unsubscribe"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received["From"] == "The Shop <shop@example.com>" and received["Reply-To"] == "help@example.com"
    assert received["Subject"] == "Spring sale: 20% off"
    assert received.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in received.iter_parts()] == ["text/plain", "text/html"]
    html = received.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "https://shop.example" not in html  # every link goes through the click endpoint
    assert len(tracked_links(html)) == 2
    assert f'href="{uris[0]}"' in html  # the footer's visible unsubscribe link
    assert re.search(re.escape(PUBLIC) + r"/o/[A-Za-z0-9_-]+\.gif", html)
    assert "Shop the sale" in received.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    (delivered,) = events(runtime, "Email Delivered")
    assert delivered["properties"]["person_id"] == "P1" and delivered["context"]["traits"]["email"] == "ann@example.org"
    props = delivered["properties"]
    assert props["channel"] == "email" and props["send_key"] == "journey:spring:email1:P1"
    assert props["campaign"] == "spring-sale" and props["message_name"] == "sale-1"
    assert props["email_id"] == expected_id


def test_a_resend_under_the_same_key_sends_nothing_and_the_connection_is_reused(world):
    runtime, box, _ = world
    channels = service.open_channels(runtime)
    d = service.dispatcher_for(runtime, channels)
    for i in range(5):
        assert d.send(mail(f"p{i}@example.org"), f"k{i}").status == "delivered"
    assert d.send(mail("p0@example.org"), "k0").new is False
    assert len(box.messages) == 5
    transport = channels["email"].transport  # type: ignore[attr-defined]
    assert isinstance(transport, SmtpPool) and transport.connections == 1


def test_a_connection_the_server_closed_is_reopened(tmp_path):
    box = Mailbox()
    controller = start(box)
    transport = SmtpTransport("127.0.0.1", controller.port, security="plain", timeout=5)
    channel = EmailChannel(EmailChannelSettings(), public_url=PUBLIC, key=b"k" * 32, transport=transport)
    assert isinstance(channel.send(mail(), "a"), Delivered)
    port = controller.port
    controller.stop()  # drops the open connection
    assert isinstance(channel.send(mail(), "b"), Transient)  # nobody listening: retry later
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert isinstance(channel.send(mail(), "c"), Delivered)
        assert len(box.messages) == 2 and transport.connections == 2
    finally:
        channel.close()
        controller.stop()


def test_connection_refused_is_transient():
    transport = SmtpTransport("127.0.0.1", free_port(), security="plain", timeout=2)
    outcome = EmailChannel(EmailChannelSettings(), public_url=PUBLIC, key=b"k" * 32, transport=transport).send(
        mail(), "x"
    )
    assert isinstance(outcome, Transient) and "failed" in outcome.reason


def test_content_that_cannot_make_a_mail_is_refused_with_the_field(world):
    runtime, box, _ = world
    d = service.dispatcher_for(runtime, service.open_channels(runtime))
    result = d.send(Message("email", "ann@example.org", {"html": "<p>x</p>"}), "no-subject")
    assert result.status == "dead" and "content.subject" in (result.reason or "")
    with pytest.raises(InputError, match="not an address"):
        EmailChannel(EmailChannelSettings(), public_url=PUBLIC, key=b"k" * 32, transport=OutboxTransport()).send(
            Message("email", "not-an-address", {"subject": "s", "text": "t"}), "bad-to"
        )
    assert box.messages == []


# --- links: click, open, unsubscribe -------------------------------------------------------------------


def test_a_click_redirects_to_the_original_target_only_and_becomes_an_event(world):
    runtime, box, client = world
    d = service.dispatcher_for(runtime, service.open_channels(runtime))
    d.send(mail(), "click-key")
    html = box.messages[0].get_body(("html",)).get_content()  # type: ignore[union-attr]
    first, second = tracked_links(html)
    answer = client.get(path_of(first))
    assert answer.status_code == 302
    assert answer.headers["location"] == "https://shop.example/sale?utm_source=email&x=1"
    assert client.get(path_of(second)).headers["location"] == "http://shop.example/stores"
    clicked = events(runtime, "Email Link Clicked")
    assert {e["properties"]["link_url"] for e in clicked} == {
        "https://shop.example/sale?utm_source=email&x=1",
        "http://shop.example/stores",
    }
    assert all(e["properties"]["send_key"] == "click-key" and e["properties"]["person_id"] == "P1" for e in clicked)
    # a token signed with another key, an altered one, garbage: 404, no redirect anywhere
    foreign = links.sign(b"another key of 32 bytes........", "c", {"k": "click-key", "t": "https://evil.example"})
    token = path_of(first).split("/")[-1]
    altered = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    for bad in (foreign, altered, "x", "A" * 60):
        refused = client.get(f"/c/{bad}")
        assert refused.status_code == 404 and "location" not in refused.headers
    # an unsubscribe token is not a click token
    unsubscribe_token = re.findall(r"/u/([A-Za-z0-9_-]+)", str(box.messages[0]["List-Unsubscribe"]))[0]
    assert client.get(f"/c/{unsubscribe_token}").status_code == 404


def test_the_open_pixel_answers_a_gif_and_records_an_open(world):
    runtime, box, client = world
    service.dispatcher_for(runtime, service.open_channels(runtime)).send(mail(), "open-key")
    html = box.messages[0].get_body(("html",)).get_content()  # type: ignore[union-attr]
    pixel = re.findall(re.escape(PUBLIC) + r"(/o/[A-Za-z0-9_-]+\.gif)", html)[0]
    answer = client.get(pixel)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
    assert answer.content.startswith(b"GIF89a")
    client.get(pixel)  # a reload within the minute is the same open
    (opened,) = events(runtime, "Email Opened")
    assert opened["properties"]["send_key"] == "open-key"
    assert client.get("/o/forged.gif").status_code == 404


def test_one_click_unsubscribe_post_without_cookies_suppresses_and_get_does_not(world):
    runtime, box, client = world
    d = service.dispatcher_for(runtime, service.open_channels(runtime))
    d.send(mail(), "first")
    header = str(box.messages[0]["List-Unsubscribe"])
    url = re.findall(r"<(https://[^>]+)>", header)[0]
    ledger = Ledger(runtime.store.engine)

    page = client.get(path_of(url))  # a link scanner or a person opening the link
    assert page.status_code == 200 and "<form method='post'" in page.text
    assert ledger.suppression("email", "ann@example.org") is None
    assert events(runtime, "Unsubscribed") == []

    client.cookies.clear()
    answer = client.post(
        path_of(url),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200 and "location" not in answer.headers
    assert "unsubscribed" in answer.text
    assert ledger.suppression("email", "ann@example.org") == "unsubscribe"
    assert client.post(path_of(url)).status_code == 200  # a second POST (no body) is harmless
    (unsubscribed,) = events(runtime, "Unsubscribed")
    assert unsubscribed["properties"]["channel"] == "email" and unsubscribed["properties"]["person_id"] == "P1"
    assert unsubscribed["properties"]["campaign"] == "spring-sale"

    again = d.send(mail(), "second")
    assert again.status == "suppressed" and len(box.messages) == 1

    token = path_of(url).split("/")[-1]
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    before = ledger.suppressions()
    assert client.post(f"/u/{forged}").status_code == 404
    assert client.get(f"/u/{forged}").status_code == 404
    other = links.sign(b"not the key of this installation", "u", {"k": "x", "ch": "email", "a": "bob@example.org"})
    assert client.post(f"/u/{other}").status_code == 404
    assert ledger.suppressions() == before


# --- bounces ------------------------------------------------------------------------------------------


def test_a_550_is_a_hard_bounce_dead_and_suppressed(world):
    runtime, box, _ = world
    d = service.dispatcher_for(runtime, service.open_channels(runtime))
    result = d.send(mail("hard@example.org"), "h1")
    assert result.status == "dead" and "550" in (result.reason or "")
    assert [r.key for r in d.dead_letters()] == ["h1"]
    assert Ledger(runtime.store.engine).suppression("email", "hard@example.org") == "bounce"
    (bounced,) = events(runtime, "Email Bounced")
    assert bounced["properties"]["bounce_type"] == "hard" and "5.1.1" in bounced["properties"]["reason"]
    assert d.send(mail("hard@example.org"), "h2").status == "suppressed"
    assert box.rcpt_calls == ["hard@example.org"]  # the second never reached the server


def test_a_451_is_retried_with_back_off_then_dead_and_suppressed(world):
    runtime, box, _ = world
    clock = Clock()
    policy = RetryPolicy(base=1.0, cap=60.0, max_attempts=4, deadline=3600.0)
    d = service.dispatcher_for(
        runtime, service.open_channels(runtime), clock=clock, rng=random.Random(3), policies={"promotional": policy}
    )
    first = d.send(mail("soft@example.org"), "s1")
    assert first.status == "retrying" and "451" in (first.reason or "")
    assert Ledger(runtime.store.engine).suppression("email", "soft@example.org") is None
    d.drain(timeout=3600, sleep=clock.sleep)
    row = Ledger(runtime.store.engine).get("s1")
    assert row is not None and row.status == "dead" and row.attempts == 4
    assert box.rcpt_calls == ["soft@example.org"] * 4
    assert Ledger(runtime.store.engine).suppression("email", "soft@example.org") == "bounce"
    (bounced,) = events(runtime, "Email Bounced")
    assert bounced["properties"]["bounce_type"] == "soft" and bounced["properties"]["suppressed"] is True


def dsn(recipient: str, status: str, action: str, original_id: str = "<k@example.com>") -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.org\r\n"
        "To: bounces@example.com\r\n"
        "Subject: Delivery Status Notification\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {status} mailbox problem\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: shop@example.com\r\nTo: {recipient}\r\nMessage-ID: {original_id}\r\nSubject: Sale\r\n"
        "--B--\r\n"
    ).encode()


def test_a_dsn_posted_with_a_secret_key_suppresses_hard_and_counts_soft_bounces(world):
    runtime, _, client = world
    ledger = Ledger(runtime.store.engine)
    d = service.dispatcher_for(runtime, service.open_channels(runtime))
    sent = d.send(mail("carol@example.org"), "dsn-send")
    secret = runtime.store.create_secret_key("mail-house")
    auth = {"Authorization": f"Bearer {secret}", "Content-Type": "message/rfc822"}

    hard = dsn("Carol@Example.org", "5.1.1", "failed", str(sent.provider_id))
    assert (
        client.post("/v1/inbound/email/dsn", content=hard, headers={"Content-Type": "message/rfc822"}).status_code
        == 401
    )
    assert ledger.suppression("email", "carol@example.org") is None
    answer = client.post("/v1/inbound/email/dsn", content=hard, headers=auth)
    assert answer.status_code == 200, answer.text
    (recipient,) = answer.json()["recipients"]
    assert recipient["bounce_type"] == "hard" and recipient["suppressed"] and recipient["send_key"] == "dsn-send"
    assert ledger.suppression("email", "carol@example.org") == "bounce"
    (bounced,) = events(runtime, "Email Bounced")
    assert bounced["properties"]["send_key"] == "dsn-send" and bounced["properties"]["person_id"] == "P1"

    for n in (1, 2, 3):
        body = client.post("/v1/inbound/email/dsn", content=dsn("dave@example.org", "4.2.2", "delayed"), headers=auth)
        assert body.json()["recipients"][0]["suppressed"] is (n == 3)
        assert (ledger.suppression("email", "dave@example.org") is not None) is (n == 3)

    refused = client.post("/v1/inbound/email/dsn", content=b"Subject: hello\r\n\r\nnot a report", headers=auth)
    assert refused.status_code == 400 and "delivery status" in refused.text
    assert client.post("/v1/inbound/email/dsn", content=b"", headers=auth).status_code == 400


def test_parse_dsn_reads_recipients_status_and_the_original_message_id():
    (one,) = parse_dsn(dsn("x@example.org", "5.2.1", "failed", "<abc@example.com>"))
    assert (one.address, one.status, one.bounce_type, one.original_message_id) == (
        "x@example.org",
        "5.2.1",
        "hard",
        "<abc@example.com>",
    )
    assert parse_dsn(dsn("x@example.org", "2.0.0", "delivered")) == []
    with pytest.raises(InputError, match="not a delivery status notification"):
        parse_dsn(b"Content-Type: text/plain\r\n\r\nhi")


# --- TLS and authentication ----------------------------------------------------------------------------


def test_starttls_with_auth_delivers_and_a_wrong_password_is_terminal_without_suppression(cert, tmp_path, monkeypatch):
    box = Mailbox()
    logins: list[tuple[str, str]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        login, password = data.login.decode(), data.password.decode()
        logins.append((login, password))
        ok = (login, password) == ("shop", "s3cret")
        return AuthResult(success=ok, handled=False)

    controller = start(box, tls_context=cert.server_context(), require_starttls=True, authenticator=authenticator)
    try:
        transport = SmtpTransport(
            "127.0.0.1",
            controller.port,
            security="starttls",
            username="shop",
            password="s3cret",
            ssl_context=cert.client_context(),
            timeout=5,
        )
        channel = EmailChannel(EmailChannelSettings(), public_url=PUBLIC, key=b"k" * 32, transport=transport)
        assert isinstance(channel.send(mail(), "tls-1"), Delivered)
        assert len(box.messages) == 1 and logins == [("shop", "s3cret")]
        channel.close()

        bad = SmtpTransport(
            "127.0.0.1",
            controller.port,
            security="starttls",
            username="shop",
            password="nope",
            ssl_context=cert.client_context(),
            timeout=5,
        )
        outcome = EmailChannel(EmailChannelSettings(), public_url=PUBLIC, key=b"k" * 32, transport=bad).send(
            mail(), "t2"
        )
        assert isinstance(outcome, Terminal) and not outcome.suppress and "authentication" in outcome.reason

        untrusted = SmtpTransport("127.0.0.1", controller.port, security="starttls", timeout=5)  # system CAs only
        outcome = EmailChannel(EmailChannelSettings(), public_url=PUBLIC, key=b"k" * 32, transport=untrusted).send(
            mail(), "t3"
        )
        assert isinstance(outcome, Terminal) and "certificate" in outcome.reason

        # the password comes from the variable the settings name, never from the file
        settings = email_settings(tmp_path, controller.port, security="starttls", username="shop")
        runtime = Runtime(settings)
        with pytest.raises(Exception, match="OMNIWEAVE_SMTP_PASSWORD"):
            service.open_channels(runtime)
        monkeypatch.setenv("OMNIWEAVE_SMTP_PASSWORD", "s3cret")
        configured = service.open_channels(runtime)["email"]
        assert isinstance(configured, EmailChannel) and isinstance(configured.transport, SmtpPool)
        assert {t.password for t in configured.transport.transports} == {"s3cret"}
        runtime.close()
    finally:
        controller.stop()


def test_implicit_tls(cert):
    box = Mailbox()
    controller = start(box, ssl_context=cert.server_context())
    try:
        transport = SmtpTransport(
            "127.0.0.1", controller.port, security="tls", ssl_context=cert.client_context(), timeout=5
        )
        assert isinstance(
            EmailChannel(EmailChannelSettings(), public_url=PUBLIC, key=b"k" * 32, transport=transport).send(
                mail(), "i"
            ),
            Delivered,
        )
        assert len(box.messages) == 1
    finally:
        controller.stop()


# --- the shipped fake and the signing key --------------------------------------------------------------


def test_the_fake_outbox_builds_the_same_mail_and_scripts_bounces(runtime):
    channels = service.open_channels(runtime, fake=True)
    channel = channels["email"]
    assert isinstance(channel, EmailChannel) and isinstance(channel.transport, OutboxTransport)
    channel.transport.replies["gone@example.org"] = (550, "5.1.1 gone")
    d = service.dispatcher_for(runtime, channels)
    assert d.send(mail(), "f1").status == "delivered"
    assert d.send(mail("gone@example.org"), "f2").status == "dead"
    (kept,) = channel.transport.to("ann@example.org")
    assert kept["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert Ledger(runtime.store.engine).suppression("email", "gone@example.org") == "bounce"


def test_signed_tokens_verify_only_unaltered_for_their_purpose_and_the_key_file_is_private(runtime, monkeypatch):
    monkeypatch.delenv("OMNIWEAVE_SIGNING_KEY", raising=False)
    token = links.sign(runtime, "q", {"k": "send-1", "t": "https://shop.example/?a=1"})
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert links.verify(runtime, "q", token) == {"k": "send-1", "t": "https://shop.example/?a=1"}
    assert links.verify(runtime, "c", token) is None
    for bad in (
        token[:-1],
        token + "A",
        token.replace(token[5], "Z" if token[5] != "Z" else "Y", 1),
        "",
        "!!",
        "." * 40,
    ):
        assert links.verify(runtime, "q", bad) is None
    key_file = Path(runtime.settings.home) / "signing.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert links.signing_key(runtime) == links.signing_key(Settings(home=runtime.settings.home))
    monkeypatch.setenv("OMNIWEAVE_SIGNING_KEY", "an operator key of enough length")
    assert links.verify(runtime, "q", token) is None  # another key: every old link is refused
    assert links.verify(runtime, "q", links.sign(runtime, "q", {"k": 1})) == {"k": 1}
    monkeypatch.setenv("OMNIWEAVE_SIGNING_KEY", "short")
    with pytest.raises(Exception, match="at least 16"):
        links.sign(runtime, "q", {})


def test_the_written_mail_parses_with_non_ascii_names_text_only_bodies_and_unfolded_long_headers():
    from omniweave.channels.email import build_email, render_email

    settings = EmailChannelSettings(from_address="shop@example.com", from_name="Boutique Élodie", reply_to="")
    sign = lambda purpose, payload: links.sign(b"k" * 32, purpose, payload)  # noqa: E731
    key = "journey:" + "x" * 150
    text_only = Message("email", "ann@example.org", {"subject": "Soldes d'été ☀", "text": "Bonjour\n.\nà bientôt"})
    parsed = build_email(text_only, key, settings=settings, public_url=PUBLIC, sign=sign)
    assert parsed["Subject"] == "Soldes d'été ☀" and parsed["From"].addresses[0].display_name == "Boutique Élodie"
    assert parsed.get_content_type() == "text/plain" and parsed.get_content() == "Bonjour\n.\nà bientôt\n"
    assert parsed["Message-ID"] == message_id(key, "shop@example.com") and len(parsed["Message-ID"]) < 160
    data = render_email(mail(), key, settings=settings, public_url=PUBLIC, sign=sign).data
    head = data.split(b"\r\n\r\n", 1)[0]
    (line,) = [x for x in head.split(b"\r\n") if x.startswith(b"List-Unsubscribe:")]
    assert b"=?" not in line and len(line) <= 998  # one line, never encoded words
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    both = build_email(mail(), key, settings=settings, public_url=PUBLIC, sign=sign)
    html = both.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Hello Ann" in html and "/o/" in html
