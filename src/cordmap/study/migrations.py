"""Versioned migrations of the study database.

Each migration is frozen: it creates or alters exactly what its version introduced, with
its own table definitions (never the current ORM models), so that a database made by any
earlier cordmap upgrades step by step to the current schema. The version reached is kept
in the `schema_version` table, one row per applied migration. Add a migration by
appending to `MIGRATIONS`; never edit one that has been released.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    inspect,
    select,
)

VERSION_TABLE = "schema_version"


def _version_table(metadata: MetaData) -> Table:
    return Table(
        VERSION_TABLE,
        metadata,
        Column("version", Integer, primary_key=True),
        Column("description", String(200), nullable=False),
        Column("applied_at", String(32), nullable=False),
    )


def _v1_participants_scans_segmentations(conn: Connection) -> None:
    metadata = MetaData()
    _version_table(metadata)
    Table(
        "participants",
        metadata,
        Column("id", String(32), primary_key=True),
        Column("sex", String(1)),
        Column("age_at_implant", Float),
        Column("years_since_injury", Float),
        Column("injury_level", String(3)),
        Column("ais_grade", String(1)),
        Column("stimulator", String(64)),
        Column("study_group", String(64)),
    )
    Table(
        "scans",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("participant_id", String(32), ForeignKey("participants.id"), nullable=False),
        Column("case_dir", String(500), nullable=False, unique=True),
        Column("subject", String(64), nullable=False),
    )
    Table(
        "segmentations",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("scan_id", Integer, ForeignKey("scans.id"), nullable=False),
        Column("source", String(16), nullable=False),
        Column("labels_file", String(500), nullable=False),
        Column("made_by", String(64)),
        Column("reviewed", Boolean, nullable=False, default=False),
        Column("reviewer", String(64)),
        UniqueConstraint("scan_id", "labels_file"),
    )
    metadata.create_all(conn)


def _v2_plans_surgeries_outcomes(conn: Connection) -> None:
    metadata = MetaData()
    # stand-ins for the existing tables, so that the new foreign keys resolve
    Table("participants", metadata, Column("id", String(32), primary_key=True))
    Table("scans", metadata, Column("id", Integer, primary_key=True))
    new = [
        Table(
            "plans",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("participant_id", String(32), ForeignKey("participants.id"), nullable=False),
            Column("scan_id", Integer, ForeignKey("scans.id")),
            Column("paddle", String(64)),
            Column("rostral_edge", String(32)),
            Column("coverage_pct", Float),
            Column("plan_file", String(500)),
        ),
        Table(
            "surgeries",
            metadata,
            Column("participant_id", String(32), ForeignKey("participants.id"), primary_key=True),
            Column("placement", String(64)),
            Column("coverage_pct", Float),
            Column("duration_min", Float),
        ),
        Table(
            "outcomes",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("participant_id", String(32), ForeignKey("participants.id"), nullable=False),
            Column("measure", String(64), nullable=False),
            Column("value", Float, nullable=False),
            Column("weeks_after_implant", Float),
            UniqueConstraint("participant_id", "measure", "weeks_after_implant"),
        ),
    ]
    metadata.create_all(conn, tables=new)


#: (version, description, migration), in order.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "participants, scans, segmentations", _v1_participants_scans_segmentations),
    (2, "plans, surgeries, outcomes", _v2_plans_surgeries_outcomes),
]
LATEST_VERSION = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int | None:
    """The schema version of the database; 0 when empty; None when it holds other tables."""
    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE not in tables:
        return 0 if not tables else None
    table = _version_table(MetaData())
    version = conn.execute(select(table.c.version).order_by(table.c.version.desc())).first()
    return version[0] if version else 0


def migrate(conn: Connection, start: int) -> list[int]:
    """Apply the migrations after version `start` on `conn` (inside its transaction)."""
    table = _version_table(MetaData())
    applied = []
    for version, description, step in MIGRATIONS:
        if version <= start:
            continue
        step(conn)
        conn.execute(
            table.insert().values(
                version=version,
                description=description,
                applied_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
        )
        applied.append(version)
    return applied
