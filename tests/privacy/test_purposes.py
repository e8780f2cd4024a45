"""The consent purposes (issue 24 §1): the defaults are the issue's, they are configurable, and every kind of
activation asks one — messages and journeys their channel's (the policy), audience exports advertising."""

from __future__ import annotations

from pathlib import Path

import pytest

from omniweave.activate.policy import CONSENT_COLUMNS, consent_problem
from omniweave.errors import ConfigError
from omniweave.privacy.consent import CHANNEL_PURPOSES, profile_column
from omniweave.settings import DEFAULT_PURPOSES, load_settings
from omniweave.storage.ops.consent import consent_column

ISSUE = ("analytics", "personalisation", "advertising", "email", "sms", "whatsapp", "push")


def test_the_default_purposes_are_the_issues_and_a_file_can_change_them(tmp_path: Path) -> None:
    assert DEFAULT_PURPOSES == ISSUE
    config = tmp_path / "omniweave.toml"
    config.write_text('[privacy]\npurposes = ["analytics", "email", "loyalty_newsletter"]\n')
    chosen = load_settings(env={}, config_file=config, home=str(tmp_path))
    assert chosen.privacy.purposes == ("analytics", "email", "loyalty_newsletter")
    config.write_text('[privacy]\npurposes = ["e-mail"]\n')
    with pytest.raises(ConfigError, match="purposes"):
        load_settings(env={}, config_file=config, home=str(tmp_path))


def test_every_activation_asks_a_configured_purpose() -> None:
    # the two layers name a purpose's profile column alike (privacy writes it, the policy reads it)
    for purpose in (*ISSUE, "loyalty_newsletter"):
        assert consent_column(purpose) == profile_column(purpose)
    # messages and journeys (the policy): each messaging channel is a purpose, and a no to it stops a promotion
    messaging = set(CONSENT_COLUMNS) - {"print"}  # direct mail: its own column, not a purpose of the issue
    assert messaging == set(CHANNEL_PURPOSES) and messaging <= set(ISSUE)
    for channel in messaging:
        column = consent_column(channel)
        assert CONSENT_COLUMNS[channel] == column
        assert consent_problem(channel, "promotional", {column: True}) is None
        assert "opted out" in str(consent_problem(channel, "promotional", {column: False}))
        assert "never stated" in str(consent_problem(channel, "promotional", {column: None}))
        assert "opted out" in str(consent_problem(channel, "transactional", {column: False}))
