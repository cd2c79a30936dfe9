"""Declarative base, naming convention and column mixins shared by every model."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import MetaData, func
from sqlalchemy.dialects.postgresql import TIMESTAMP, UUID
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    # The names PostgreSQL itself generates, so that create_all, Alembic and the
    # guide's plain SQL produce identical schemas and migrations can name constraints.
    "pk": "%(table_name)s_pkey",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    # The guide names its indexes idx_<table>_<column>.
    "ix": "idx_%(table_name)s_%(column_0_N_name)s",
}


class Base(AsyncAttrs, DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Server-made values (defaults, updated_at) come back by RETURNING in the same
    # statement, so reading them after a flush never needs a lazy load.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 - read by the mapper only


TIMESTAMPTZ = TIMESTAMP(timezone=True)

# Column order follows the guide's DDL: id first, then the model's columns, then the
# timestamps; a column added later by a migration sorts after them (sort_order=100).


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        primary_key=True,
        server_default=func.gen_random_uuid(),
        sort_order=-100,
    )
    """Made by the server, so rows inserted outside the ORM get one too."""


class CreatedAt:
    created_at: Mapped[datetime] = mapped_column(
        TIMESTAMPTZ, server_default=func.now(), sort_order=90
    )


class Timestamps(CreatedAt):
    updated_at: Mapped[datetime] = mapped_column(
        TIMESTAMPTZ, server_default=func.now(), onupdate=func.statement_timestamp(), sort_order=91
    )
    """Moves on every ORM or Core update; statement time, so it moves within a transaction too."""
