"""A small project for the forms tests: a home with form files, and a real SMTP server on loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller

from omniweave.runtime import Runtime
from omniweave.settings import Settings, load_settings
from tests.conftest import free_port

NEWSLETTER: dict[str, Any] = {
    "name": "newsletter",
    "locales": ["en", "de"],
    "title": {"en": "Join our newsletter", "de": "Newsletter abonnieren"},
    "intro": {"en": "News and offers from the shop.", "de": "Neuigkeiten und Angebote."},
    "fields": [
        {"name": "email", "type": "email", "required": True},
        {"name": "phone", "type": "phone"},
        {"name": "first_name", "type": "name"},
        {"name": "birthday", "type": "birthday"},
        {"name": "postcode", "type": "postcode"},
        {"name": "preferred_store", "type": "preferred_store", "options": ["S01", "S02"]},
        {"name": "interests", "type": "interests", "options": ["food", "garden", "kids"]},
        {
            "name": "shoe_size",
            "type": "custom",
            "label": {"en": "Shoe size", "de": "Schuhgröße"},
            "pattern": "^[0-9]{2}$",
        },
    ],
    "purposes": [
        {
            "name": "email",
            "wording": {"en": "E-mail me news and offers", "de": "Schickt mir Neuigkeiten per E-Mail"},
            "confirm": "email",
        },
        {
            "name": "personalisation",
            "wording": {"en": "Tailor the offers to me", "de": "Angebote auf mich zuschneiden"},
            "confirm": "email",
        },
    ],
    "thank_you": {"en": "Thanks! Please check your inbox to confirm.", "de": "Danke! Bitte bestätigen Sie per E-Mail."},
    "min_seconds": 0,
    "confirm_hours": 48,
    "allowed_origins": [],
}


@dataclass
class Mailbox:
    """aiosmtpd handler keeping every message it accepts."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content or envelope.content, policy=default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 2.0.0 queued"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if str(m["To"]).lower() == address.lower()]

    def confirm_link(self, address: str) -> str:
        """The confirmation link of the last mail to `address` (from its plain-text part)."""
        mail = self.to(address)[-1]
        text = mail.get_body(preferencelist=("plain",))
        assert text is not None
        found = re.search(r"(https?://\S+/f/confirm/\S+)", text.get_content())
        assert found, text.get_content()
        return found.group(1)

    def confirm_token(self, address: str) -> str:
        """The signed token of the last confirmation link to `address` (the link without its `?lang=`)."""
        return self.confirm_link(address).split("?", 1)[0].rsplit("/", 1)[1]


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


def write_home(home: Path, smtp_port: int, public_url: str, forms: list[dict[str, Any]]) -> Settings:
    """A home folder with omniweave.toml (e-mail through the SMTP server at `smtp_port`) and form files."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "omniweave.toml").write_text(
        f"""
[channels]
public_url = "{public_url}"

[channels.email]
enabled = true
host = "127.0.0.1"
port = {smtp_port}
security = "plain"
from_address = "hello@shop.example"
""",
        encoding="utf-8",
    )
    folder = home / "forms"
    folder.mkdir(exist_ok=True)
    for form in forms:
        (folder / f"{form['name']}.yaml").write_text(yaml.safe_dump(form, allow_unicode=True), encoding="utf-8")
    return load_settings(home=str(home))


@pytest.fixture
def forms_runtime(tmp_path: Path, mailbox: tuple[Mailbox, int]) -> Iterator[Runtime]:
    settings = write_home(tmp_path / "home", mailbox[1], "http://testserver", [NEWSLETTER])
    runtime = Runtime(settings)
    yield runtime
    runtime.close()
