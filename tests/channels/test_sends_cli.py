"""The send ledger from the command line: a 400 lands in the dead letters, `sends replay` after the fix delivers
once, `sends work` attempts what is due; against a real webhook receiver on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from typer.testing import CliRunner

from omniweave.channels.port import Message
from omniweave.channels.service import dispatcher_for, open_channels
from omniweave.runtime import Runtime
from omniweave.settings import load_settings
from omniweave.shells.cli.main import app

runner = CliRunner()


class Receiver:
    """A webhook receiver that answers `status` to every POST and keeps each request's idempotency key."""

    def __init__(self) -> None:
        self.status = 400
        self.keys: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.keys.append(self.headers.get("Omniweave-Idempotency-Key", ""))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_dead_letters_listed_replayed_once_after_the_fix(tmp_path, receiver, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "omniweave.toml").write_text(f"[channels.webhook]\nenabled = true\nurl = '{receiver.url}'\n")
    monkeypatch.setenv("OMNIWEAVE_WEBHOOK_SECRET", "a-webhook-secret-of-some-length")
    runtime = Runtime(load_settings(env={}, home=str(home)))
    dispatcher = dispatcher_for(runtime, open_channels(runtime))
    sent = dispatcher.send(Message("webhook", receiver.url, {"payload": {"order": 7}}), "hook:order-7")
    assert sent.status == "dead" and "HTTP 400" in (sent.reason or "")
    runtime.close()

    listed = runner.invoke(app, ["--home", str(home), "sends", "list", "--status", "dead", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    report = orjson.loads(listed.output)
    assert report["counts"] == {"dead": 1}
    assert [r["key"] for r in report["rows"]] == ["hook:order-7"]
    assert "content" not in report["rows"][0]  # the ledger's content (personal data) is not printed

    nothing = runner.invoke(app, ["--home", str(home), "sends", "work", "--format", "json"])
    assert orjson.loads(nothing.output) == {"requeued": 0, "attempted": 0, "statuses": {}}  # dead is never retried

    receiver.status = 200  # the fix
    replayed = runner.invoke(app, ["--home", str(home), "sends", "replay", "--format", "json"])
    assert replayed.exit_code == 0, replayed.output
    assert orjson.loads(replayed.output) == {"requeued": 1, "attempted": 1, "statuses": {"delivered": 1}}
    again = runner.invoke(app, ["--home", str(home), "sends", "replay", "--format", "json"])
    assert orjson.loads(again.output)["requeued"] == 0
    assert receiver.keys == ["hook:order-7", "hook:order-7"]  # one failed try, one delivery, one key

    csv_out = runner.invoke(app, ["--home", str(home), "sends", "list", "--format", "csv"])
    assert csv_out.output.splitlines()[0] == "key,channel,to_address,status,attempts,reason"
    bad = runner.invoke(app, ["--home", str(home), "sends", "list", "--status", "lost"])
    assert bad.exit_code == 2 and "unknown send status 'lost'" in bad.output
