"""The CLI of the reach channels: VAPID keys that work, print batches flushed and delivered from the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from typer.testing import CliRunner

from omniweave.channels.port import Message
from omniweave.channels.print.service import open_print_channel
from omniweave.channels.push.vapid import load_vapid, public_key_text
from omniweave.shells.cli.main import app

runner = CliRunner()


def test_vapid_keys_prints_a_working_pair():
    result = runner.invoke(app, ["push", "vapid-keys", "--format", "json"])
    assert result.exit_code == 0, result.output
    keys = orjson.loads(result.output)
    assert public_key_text(load_vapid(keys["private_key"]).public_key) == keys["public_key"]
    env = runner.invoke(app, ["push", "vapid-keys"])
    assert env.exit_code == 0 and "\nOMNIWEAVE_VAPID_PRIVATE_KEY=" in env.output


def test_print_flush_and_deliveries(runtime):
    home = runtime.settings.home
    channel = open_print_channel(runtime)
    body = {"address": ["Ann Example", "1 High Street", "Bristol BS1 4DJ"], "text": "Hello Ann"}
    channel.send(Message("print", "1 High Street", body, person_id="P1"), "k1")
    listed = runner.invoke(app, ["--home", home, "print", "batches", "--format", "json"])
    assert [row["status"] for row in orjson.loads(listed.output)] == ["open"]
    flushed = runner.invoke(app, ["--home", home, "print", "flush", "--format", "json"])
    assert flushed.exit_code == 0, flushed.output
    (batch,) = orjson.loads(flushed.output)
    assert batch["letters"] == 1 and batch["pdf"].endswith(".pdf")
    later = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
    for expected in (1, 0):
        done = runner.invoke(app, ["--home", home, "print", "deliveries", "--today", later, "--format", "json"])
        assert done.exit_code == 0, done.output
        assert orjson.loads(done.output)["new_events"] == expected
    bad = runner.invoke(app, ["--home", home, "print", "deliveries", "--today", "tomorrow"])
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output
