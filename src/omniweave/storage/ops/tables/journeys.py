"""Journeys: published versions, runs, waits, entries, and each run's step history.

`journey_versions` holds every published definition (JSON); a run stays on the version it entered.
`journey_runs` is one row per (journey, person, entry key): the unique key is what makes a replayed
trigger start no second run. `status` is `active` (due at `wake_at`), `waiting` (parked on a
`journey_waits` row until its event or `wake_at`, the timeout), `done`, `converted`, `exited` or
`failed`. Steppers claim due rows by setting `lease_owner`/`lease_until` (`FOR UPDATE SKIP LOCKED`
on PostgreSQL); a lease that ran out is claimable again, so a killed worker loses no run.
`journey_waits` are woken by the matching event as the trigger consumer reads it from the inbox.
`journey_entries` counts entries per person (re-entry rules and caps). `journey_steps` is the
history `stats` and `explain` read: one row per step a run took, with its outcome and reason.
"""

import sqlalchemy as sa

from omniweave.storage.ops.tables.base import metadata

journey_versions = sa.Table(
    "journey_versions",
    metadata,
    sa.Column("journey", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("definition", sa.LargeBinary, nullable=False),
    sa.Column("checksum", sa.String(64), nullable=False),
    sa.Column("published_at", sa.Float, nullable=False),
    sa.Column("note", sa.String(1000), nullable=True),
)

journey_runs = sa.Table(
    "journey_runs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("journey", sa.String(100), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("person_id", sa.String(64), nullable=False),
    sa.Column("entry_key", sa.String(200), nullable=False),
    sa.Column("node", sa.String(100), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("variant", sa.String(40), nullable=True),
    sa.Column("wake_at", sa.Float, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("context", sa.LargeBinary, nullable=False),
    sa.Column("entered_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float, nullable=True),
    sa.Column("end_reason", sa.String(1000), nullable=True),
    sa.UniqueConstraint("journey", "person_id", "entry_key", name="journey_runs_entry"),
    sa.Index("journey_runs_due", "status", "wake_at"),
    sa.Index("journey_runs_person", "person_id", "journey"),
)

journey_waits = sa.Table(
    "journey_waits",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("person_id", sa.String(64), nullable=False),
    sa.Column("event", sa.String(200), nullable=False),
    sa.Column("corr_property", sa.String(100), nullable=True),
    sa.Column("corr_value", sa.String(500), nullable=True),
    sa.Column("until", sa.Float, nullable=False),
    sa.Index("journey_waits_person", "person_id", "event"),
)

journey_entries = sa.Table(
    "journey_entries",
    metadata,
    sa.Column("journey", sa.String(100), primary_key=True),
    sa.Column("person_id", sa.String(64), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("last_entered_at", sa.Float, nullable=False),
)

journey_steps = sa.Table(
    "journey_steps",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("journey", sa.String(100), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("person_id", sa.String(64), nullable=False),
    sa.Column("node", sa.String(100), nullable=False),
    sa.Column("outcome", sa.String(40), nullable=False),
    sa.Column("reason", sa.String(1000), nullable=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("journey_steps_node", "journey", "node"),
    sa.Index("journey_steps_run", "run_id"),
    sa.Index("journey_steps_person", "person_id"),
    sqlite_autoincrement=True,
)
