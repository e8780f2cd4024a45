"""Sign-ups through forms (forms/service.py), from the submit to the confirmation or the expiry.

`form_signups`: one row per sign-up that asked for a consent needing confirmation (double opt-in) or that
was confirmed at once. It keeps the evidence a consent must be able to show: the form and where it was
shown (`placement`), the exact words of each purpose ticked, in the visitor's locale (`purposes`, JSON:
[{name, confirm, wording}]), when and from which IP it was submitted, and when, from which IP and how
(`confirmed_via`: email link, sms keyword, none) it was confirmed. `status` is pending, confirmed or
expired; an expired sign-up keeps no e-mail, phone, IP or anonymous id (forms expire clears them).
"""

from __future__ import annotations

import sqlalchemy as sa

from omniweave.storage.ops.tables.base import metadata

form_signups = sa.Table(
    "form_signups",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("form", sa.String(60), nullable=False),
    sa.Column("placement", sa.String(20), nullable=False),
    sa.Column("locale", sa.String(8), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),  # pending | confirmed | expired
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("phone", sa.String(40), nullable=True),
    sa.Column("anonymous_id", sa.String(200), nullable=True),
    sa.Column("purposes", sa.Text, nullable=False),  # JSON [{name, confirm, wording}]
    sa.Column("submitted_at", sa.Float, nullable=False),
    sa.Column("submitted_ip", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.String(300), nullable=True),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("confirmed_at", sa.Float, nullable=True),
    sa.Column("confirmed_ip", sa.String(64), nullable=True),
    sa.Column("confirmed_via", sa.String(10), nullable=True),  # email | sms | none
    sa.Column("coupon", sa.String(64), nullable=True),
    sa.Index("form_signups_status", "status", "expires_at"),
    sa.Index("form_signups_phone", "phone", "status"),
)
