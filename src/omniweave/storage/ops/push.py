"""Web push subscriptions: what browsers gave us (endpoint and keys), who they belong to, and their removal.

A row's id is the SHA-256 of the endpoint (endpoints are long URLs; the id keeps the key short). A
browser that subscribes again with the same endpoint updates its row (new keys, new owner); a push
service answering 404/410 deletes it (`remove`), as does the browser's unsubscribe.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import sqlalchemy as sa

from omniweave.storage.ops.tables.reach import push_subscriptions


def endpoint_id(endpoint: str) -> str:
    """The row id of a subscription: the SHA-256 (hex) of its endpoint URL."""
    return hashlib.sha256(endpoint.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PushSubscription:
    """One browser's push subscription (keys base64url as the browser gave them)."""

    id: str
    endpoint: str
    p256dh: str
    auth: str
    person_id: str | None
    user_id: str | None
    anonymous_id: str | None
    user_agent: str | None
    created_at: float

    def info(self) -> dict[str, object]:
        """The subscription in the browser's `PushSubscription.toJSON()` shape (what pywebpush takes)."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}

    def to_dict(self) -> dict[str, object]:
        """The row without its keys (they are secrets of the browser)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("p256dh", "auth")}


class PushSubscriptions:
    """The `push_subscriptions` table of one operational store (its SQLAlchemy engine)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def save(
        self,
        endpoint: str,
        p256dh: str,
        auth: str,
        *,
        person_id: str | None = None,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        user_agent: str | None = None,
    ) -> tuple[PushSubscription, bool]:
        """Insert or update the subscription of `endpoint`; returns it and whether it is new."""
        row_id = endpoint_id(endpoint)
        values = {
            "endpoint": endpoint,
            "p256dh": p256dh,
            "auth": auth,
            "person_id": person_id,
            "user_id": user_id,
            "anonymous_id": anonymous_id,
            "user_agent": user_agent,
        }
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(push_subscriptions.c.id).where(push_subscriptions.c.id == row_id)).first()
            new = found is None
            if new:
                try:
                    conn.execute(push_subscriptions.insert().values(id=row_id, created_at=time.time(), **values))
                except sa.exc.IntegrityError:
                    new = False
            if not new:
                conn.execute(push_subscriptions.update().where(push_subscriptions.c.id == row_id).values(**values))
        saved = self.get(endpoint)
        assert saved is not None
        return saved, new

    def get(self, endpoint: str) -> PushSubscription | None:
        """The subscription of `endpoint`, or None."""
        with self.engine.connect() as conn:
            found = (
                conn.execute(sa.select(push_subscriptions).where(push_subscriptions.c.id == endpoint_id(endpoint)))
                .mappings()
                .first()
            )
        return PushSubscription(**found) if found is not None else None

    def remove(self, endpoint: str) -> PushSubscription | None:
        """Delete the subscription of `endpoint`; returns what was deleted (None if there was none)."""
        found = self.get(endpoint)
        if found is None:
            return None
        with self.engine.begin() as conn:
            result = conn.execute(push_subscriptions.delete().where(push_subscriptions.c.id == found.id))
        return found if result.rowcount == 1 else None

    def of(
        self, *, person_id: str | None = None, user_id: str | None = None, anonymous_id: str | None = None
    ) -> list[PushSubscription]:
        """Every subscription of a person (by person id, userId or anonymousId: any that is given), oldest first."""
        conditions = [
            column == value
            for column, value in (
                (push_subscriptions.c.person_id, person_id),
                (push_subscriptions.c.user_id, user_id),
                (push_subscriptions.c.anonymous_id, anonymous_id),
            )
            if value
        ]
        if not conditions:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(push_subscriptions).where(sa.or_(*conditions)).order_by(push_subscriptions.c.created_at)
            ).mappings()
            return [PushSubscription(**row) for row in rows]

    def count(self) -> int:
        """How many subscriptions are stored."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(push_subscriptions)).scalar_one())
