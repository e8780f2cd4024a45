"""The privacy services on PostgreSQL: consent statements recorded once, a deletion's operational scrub
and VACUUM FULL, a suppression's blocklist — the code paths that differ from SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from omniweave.collect.emit import emit
from omniweave.collect.loader import load_all
from omniweave.privacy.service.consent import consent_of, record_consent, sync_consent
from omniweave.privacy.service.requests import submit
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.ops.ledger import Ledger
from omniweave.storage.ops.tables import inbox, sends
from omniweave.storage.ops.tables.privacy import privacy_blocked

pytestmark = pytest.mark.postgres

EMAIL = "zoe.pg@example.com"


def test_consent_delete_and_suppress_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    runtime = Runtime(Settings(home=str(tmp_path / "home"), database_url=postgres_url))
    try:
        events = [
            {"type": "identify", "userId": "zoe", "messageId": "z1", "traits": {"email": EMAIL, "email_opt_in": True}},
            {
                "type": "track",
                "event": "Order Completed",
                "userId": "zoe",
                "messageId": "z2",
                "properties": {"revenue": 9},
            },
            {
                "type": "track",
                "event": "Order Completed",
                "userId": "max",
                "messageId": "m1",
                "properties": {"revenue": 5},
            },
        ]
        emit(runtime.store, "test", events)
        load_all(runtime.store, runtime.log)
        emit(
            runtime.store, "test", [{"type": "track", "event": "Late", "userId": "zoe", "messageId": "z3"}]
        )  # not loaded
        assert sync_consent(runtime).recorded == 1 and sync_consent(runtime).recorded == 0
        view = record_consent(runtime, "user_id:zoe", "advertising", False)
        assert view.current == {"email": True, "advertising": False}
        assert consent_of(runtime, "zoe").history[-1].source == "api"
        Ledger(runtime.store.engine).insert(
            {
                "key": "k1",
                "channel": "email",
                "to_address": EMAIL,
                "person_id": None,
                "message_class": "promotional",
                "content": b'{"subject": "Hi Zoe"}',
            }
        )
        done = submit(runtime, "delete", f"email:{EMAIL}")
        assert done.status == "done"
        targets = {r.target: r.count for r in done.receipts}
        assert targets["warehouse:events"] == 1 and targets["ops:sends"] == 1 and targets["ops:compact"] > 0
        assert targets["ops:inbox"] >= 1
        with runtime.store.engine.connect() as conn:
            assert conn.execute(sa.select(sends.c.to_address)).scalars().all() == ["(deleted)"]
            payloads = b"".join(bytes(p) for p in conn.execute(sa.select(inbox.c.payload)).scalars())
            assert EMAIL.encode() not in payloads
            assert conn.execute(sa.select(sa.func.count()).select_from(privacy_blocked)).scalar_one() >= 1
        left = runtime.warehouse().sql("SELECT user_id FROM events ORDER BY user_id").to_pylist()
        # zoe's identify named her e-mail: gone; her other events name only "zoe", which this request did not
        # know (no identities resolved yet): the user id is refused at ingest only once it is resolved to her
        assert {"user_id": "max"} in left and all(EMAIL not in str(r) for r in left)
    finally:
        runtime.close()
