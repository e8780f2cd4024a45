"""The one `MetaData` every table of the operational store is defined on."""

import sqlalchemy as sa

metadata = sa.MetaData()
