"""Personalisation consent at render time, and the best sellers that stand in for a person's products.

- `personalisation_stated(conn, profiles)`: per profile, its `consent_purpose_personalisation` with the
  consent history's latest statement over it (one query for the batch, storage/ops/consent.py) — the
  same rule as the policy's `with_stated_consent`: a stated no wins from either side, a yes in the
  history fills in unless the profile says no, and a yes stated after the profile's `last_seen` wins;
  so a withdrawal through the API or the CLI reaches the next message, not the one after the next build;
- `personalisation_flags(conn, settings, profiles)`: whether each may get personal content
  (`[privacy] personalisation`: `denied` or `not_granted`, content/personal.py);
- `best_sellers(runtime)`: the products in the most orders over everyone (`Order Completed`, top 5, ties
  by product id) — the default fallback for recommendations; read once per Runtime and kept 10 minutes;
- `without_personalisation(settings, message)`: the message's own choice, else the setting.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from omniweave.activate.content.model import MessageDef
from omniweave.activate.content.personal import PERSONALISATION_COLUMN, personalised
from omniweave.activate.service.policy import listed_identifiers, stated_over
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.ops.consent import latest_consent_at

BEST_SELLERS_N = 5
BEST_SELLERS_SECONDS = 600.0
_BEST: weakref.WeakKeyDictionary[Runtime, tuple[float, tuple[str, ...]]] = weakref.WeakKeyDictionary()
_BEST_LOCK = threading.Lock()


def personalisation_stated(conn: sa.Connection, profiles: Sequence[Mapping[str, Any]]) -> list[bool | None]:
    """Per profile row: the person's personalisation consent (True, False, None = never stated), the profile's
    column with the consent history's latest statement over it."""
    people = [listed_identifiers(profile) for profile in profiles]
    stated = latest_consent_at(conn, people) if any(people) else [{} for _ in profiles]
    out: list[bool | None] = []
    for profile, said in zip(profiles, stated, strict=True):
        value = profile.get(PERSONALISATION_COLUMN)
        current = None if value is None else bool(value)
        found = said.get(PERSONALISATION_COLUMN)
        if found is not None:
            current = stated_over(current, found, profile.get("last_seen"))
        out.append(current)
    return out


def personalisation_flags(
    conn: sa.Connection, settings: Settings, profiles: Sequence[Mapping[str, Any]]
) -> list[tuple[bool, bool | None]]:
    """Per profile row: (whether personal content may be used, the consent as stated)."""
    mode = settings.privacy.personalisation
    return [(personalised(s, mode), s) for s in personalisation_stated(conn, profiles)]


def without_personalisation(settings: Settings, message: MessageDef) -> str:
    """`fallback` or `skip`: what `message` does for a person it may not personalise."""
    return message.without_personalisation or settings.privacy.without_personalisation


def best_sellers_now(runtime: Runtime, n: int = BEST_SELLERS_N) -> tuple[str, ...]:
    """The `n` products in the most orders over everyone (ties by product id), read from the event log now."""
    if not runtime.log.has_data("events"):
        return ()
    import ibis

    from omniweave.events import spec

    events = runtime.warehouse().table("events")
    d = runtime.engine.dialect
    orders = events.filter(events.event == spec.ORDER_COMPLETED)
    lines = orders.select("message_id", item=d.products(d.json(orders.properties, "products")).unnest())
    bought = lines.select("message_id", product=lines.item.product_id).filter(ibis._.product.notnull()).distinct()
    counted = bought.group_by("product").aggregate(orders=bought.count())
    ranked = counted.order_by([counted.orders.desc(), counted.product]).limit(n)
    return tuple(str(p) for p in ranked.product.to_pyarrow().to_pylist())


def best_sellers(runtime: Runtime) -> tuple[str, ...]:
    """`best_sellers_now`, read once per Runtime and kept `BEST_SELLERS_SECONDS`."""
    now = time.monotonic()
    with _BEST_LOCK:
        found = _BEST.get(runtime)
        if found is not None and now - found[0] < BEST_SELLERS_SECONDS:
            return found[1]
    value = best_sellers_now(runtime)
    with _BEST_LOCK:
        _BEST[runtime] = (now, value)
    return value


__all__ = [
    "best_sellers",
    "best_sellers_now",
    "personalisation_flags",
    "personalisation_stated",
    "without_personalisation",
]
