"""The study registry: a database of participants, scans, segmentations, plans, surgeries
and outcomes.

A SQLite file by default; any SQLAlchemy URL (e.g. ``postgresql://host/study``) also
works. The schema is created and upgraded by the versioned migrations of
`cordmap.study.migrations`; a database written by a newer cordmap is refused rather than
misread. Every change runs in one transaction: it is applied whole or not at all.

No identifying data is stored: a participant is a pseudonymous id with the clinical fields
a study compares (sex, age at implant, years since injury, injury level, AIS grade,
stimulator model, group); there is no field for a name, a date of birth or a hospital
number, and `cordmap.study.csvimport` refuses such columns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
    func,
    make_url,
    select,
)
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from cordmap.errors import CordmapError
from cordmap.protocol.levels import SEGMENTS
from cordmap.study import migrations

PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
SEXES = ("F", "M", "X")
AIS_GRADES = ("A", "B", "C", "D", "E")


class Base(DeclarativeBase):
    pass


class Participant(Base):
    __tablename__ = "participants"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sex: Mapped[str | None] = mapped_column(String(1))
    age_at_implant: Mapped[float | None] = mapped_column(Float)  # years
    years_since_injury: Mapped[float | None] = mapped_column(Float)
    injury_level: Mapped[str | None] = mapped_column(String(3))  # neurological level, e.g. T4
    ais_grade: Mapped[str | None] = mapped_column(String(1))  # ASIA Impairment Scale A-E
    stimulator: Mapped[str | None] = mapped_column(String(64))
    group: Mapped[str | None] = mapped_column("study_group", String(64))
    scans: Mapped[list[Scan]] = relationship(back_populates="participant", order_by="Scan.id")
    plans: Mapped[list[Plan]] = relationship(order_by="Plan.id")
    surgery: Mapped[Surgery | None] = relationship()
    outcomes: Mapped[list[Outcome]] = relationship(order_by="Outcome.id")


class Scan(Base):
    """A case folder (see `cordmap.case`) of one participant."""

    __tablename__ = "scans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    participant_id: Mapped[str] = mapped_column(String(32), ForeignKey("participants.id"))
    case_dir: Mapped[str] = mapped_column(String(500), unique=True)
    subject: Mapped[str] = mapped_column(String(64))
    participant: Mapped[Participant] = relationship(back_populates="scans")
    segmentations: Mapped[list[Segmentation]] = relationship(
        back_populates="scan", order_by="Segmentation.id"
    )


class Segmentation(Base):
    """A label volume of a scan: made by a rater (manual) or a model, reviewed or not."""

    __tablename__ = "segmentations"
    __table_args__ = (UniqueConstraint("scan_id", "labels_file"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(Integer, ForeignKey("scans.id"))
    source: Mapped[str] = mapped_column(String(16))  # "manual" or "unet"
    labels_file: Mapped[str] = mapped_column(String(500))  # relative to the case folder
    made_by: Mapped[str | None] = mapped_column(String(64))  # rater pseudonym or model name
    reviewed: Mapped[bool] = mapped_column(Boolean, default=False)
    reviewer: Mapped[str | None] = mapped_column(String(64))
    scan: Mapped[Scan] = relationship(back_populates="segmentations")


class Plan(Base):
    __tablename__ = "plans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    participant_id: Mapped[str] = mapped_column(String(32), ForeignKey("participants.id"))
    scan_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("scans.id"))
    paddle: Mapped[str | None] = mapped_column(String(64))
    rostral_edge: Mapped[str | None] = mapped_column(String(32))  # e.g. "mid-T11"
    coverage_pct: Mapped[float | None] = mapped_column(Float)  # planned enlargement coverage
    plan_file: Mapped[str | None] = mapped_column(String(500))


class Surgery(Base):
    """The implant as achieved: placement, enlargement coverage and operating time."""

    __tablename__ = "surgeries"
    participant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("participants.id"), primary_key=True
    )
    placement: Mapped[str | None] = mapped_column(String(64))
    coverage_pct: Mapped[float | None] = mapped_column(Float)
    duration_min: Mapped[float | None] = mapped_column(Float)


class Outcome(Base):
    __tablename__ = "outcomes"
    __table_args__ = (UniqueConstraint("participant_id", "measure", "weeks_after_implant"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    participant_id: Mapped[str] = mapped_column(String(32), ForeignKey("participants.id"))
    measure: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    weeks_after_implant: Mapped[float | None] = mapped_column(Float)


#: Participant fields as (name, type, help); `id` first. CSV columns use these names.
PARTICIPANT_FIELDS = (
    ("id", str, "pseudonymous participant id (letters, digits, - and _)"),
    ("sex", str, "F, M or X"),
    ("age_at_implant", float, "age at implant in years"),
    ("years_since_injury", float, "years from injury to implant"),
    ("injury_level", str, "neurological level of injury, C1..S5"),
    ("ais_grade", str, "ASIA Impairment Scale grade, A..E"),
    ("stimulator", str, "implanted stimulator / paddle model"),
    ("group", str, "study group, e.g. 3d-planned or conventional"),
)


def validate_participant(values: dict, where: str = "participant") -> dict:
    """Check and normalise participant fields (strings from a CLI or CSV); return them typed."""
    out: dict[str, Any] = {}
    for name, kind, help_ in PARTICIPANT_FIELDS:
        raw = values.get(name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if name == "id":
                raise CordmapError(f"{where}: the participant id is missing; give a {help_}")
            out[name] = None
            continue
        if kind is float:
            try:
                out[name] = float(raw)
            except (TypeError, ValueError):
                raise CordmapError(
                    f"{where}: {name} '{raw}' is not a number; give the {help_}"
                ) from None
            if not math.isfinite(out[name]):
                raise CordmapError(
                    f"{where}: {name} '{raw}' is not a finite number; give the "
                    f"{help_}, or leave the cell empty when unknown"
                )
        else:
            out[name] = str(raw).strip()
            if any(ord(c) < 32 or ord(c) == 127 for c in out[name]):
                raise CordmapError(
                    f"{where}: {name} {out[name]!r} holds control characters "
                    "(terminal escapes, line breaks); remove them"
                )
    _check_fields(out, where)
    return out


def _check_fields(p: dict, where: str) -> None:
    def bad(name, why):
        raise CordmapError(f"{where}: {name} '{p[name]}' {why}")

    if not PSEUDONYM.match(p["id"]):
        bad("id", "is not a pseudonymous id; use up to 32 letters, digits, - or _ (e.g. P001)")
    if p["sex"] is not None:
        p["sex"] = p["sex"].upper()
        if p["sex"] not in SEXES:
            bad("sex", "is not one of F, M, X")
    if p["ais_grade"] is not None:
        p["ais_grade"] = p["ais_grade"].upper()
        if p["ais_grade"] not in AIS_GRADES:
            bad("ais_grade", "is not an AIS grade A..E")
    if p["injury_level"] is not None:
        p["injury_level"] = p["injury_level"].upper()
        if p["injury_level"] not in SEGMENTS:
            bad("injury_level", "is not a neurological level C1..C8, T1..T12, L1..L5, S1..S5")
    if p["age_at_implant"] is not None and not 0 < p["age_at_implant"] < 120:
        bad("age_at_implant", "is not an age in years (0-120)")
    if p["years_since_injury"] is not None:
        if p["years_since_injury"] < 0:
            bad("years_since_injury", "is negative")
        if p["age_at_implant"] is not None and p["years_since_injury"] > p["age_at_implant"]:
            bad("years_since_injury", "exceeds the age at implant")


@dataclass(frozen=True)
class Opened:
    """What `init_registry` did: the schema versions applied (empty when up to date)."""

    version: int
    applied: list[int]


def _url(db: str | Path) -> str:
    text = str(db)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


def display_name(db: str | Path) -> str:
    """The database as messages show it: the path, or the URL without its password."""
    text = str(db)
    if "://" not in text:
        return text
    try:
        return make_url(text).render_as_string(hide_password=True)
    except ArgumentError:
        return text.split("://", 1)[0] + "://..."


def _engine(url: str) -> Engine:
    try:
        engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise CordmapError(
            f"cannot use the database {display_name(url)} ({exc}); give a SQLite file path or a "
            "SQLAlchemy URL such as postgresql+psycopg://user@host/study, with its driver "
            "installed (pip install psycopg[binary])"
        ) from None
    if engine.dialect.name == "sqlite":
        # pysqlite does not put DDL in transactions by itself: take over BEGIN so that a
        # migration or an import is all-or-nothing, and enforce foreign keys.
        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA foreign_keys=ON")

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN")

    return engine


def _version(engine: Engine, db) -> int:
    db = display_name(db)
    try:
        with engine.connect() as conn:
            version = migrations.current_version(conn)
    except DBAPIError as exc:
        engine.dispose()
        reason = " ".join(str(exc.orig).split())
        raise CordmapError(
            f"{db} is not a readable study database ({reason}); check the path or URL"
        ) from None
    if version is None:
        engine.dispose()
        raise CordmapError(
            f"{db} is a database but not a cordmap study registry (it has no "
            "schema_version table); pass a registry made by `cordmap study init`"
        )
    if version > migrations.LATEST_VERSION:
        engine.dispose()
        raise CordmapError(
            f"{db} has schema version {version}, newer than this cordmap understands "
            f"(up to {migrations.LATEST_VERSION}); upgrade cordmap to open it"
        )
    return version


def init_registry(db: str | Path) -> Opened:
    """Create the study database `db` (path or URL), or upgrade it to the current schema."""
    engine = _engine(_url(db))
    try:
        start = _version(engine, db)
        with engine.begin() as conn:
            applied = migrations.migrate(conn, start)
    finally:
        engine.dispose()
    return Opened(migrations.LATEST_VERSION, applied)


class Registry:
    """An open study database. Use `Registry.open(db)`; changes go through `transaction()`."""

    def __init__(self, engine: Engine, name: str):
        self.engine = engine
        self.name = name

    @classmethod
    def open(cls, db: str | Path) -> Registry:
        url = _url(db)
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
            raise CordmapError(
                f"there is no study database at {db}; create it with `cordmap study init {db}`"
            )
        engine = _engine(url)
        version = _version(engine, db)
        name = display_name(db)
        if version < migrations.LATEST_VERSION:
            engine.dispose()
            raise CordmapError(
                f"{name} has schema version {version}, older than this cordmap's "
                f"{migrations.LATEST_VERSION}; upgrade it with `cordmap study init {name}` "
                "(all-or-nothing, keeps every record)"
            )
        return cls(engine, name)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose changes are committed together at the end, or not at all."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                with session.begin():
                    yield session
            except IntegrityError as exc:
                reason = " ".join(str(exc.orig).split())
                raise CordmapError(
                    f"{self.name}: the change conflicts with the records "
                    f"({reason}); nothing was written"
                ) from None

    # -- participants --------------------------------------------------------------------
    def add_participants(self, rows: list[dict], where: str = "participant") -> list[str]:
        """Register participants (validated fields); all or none. Returns their ids."""
        with self.transaction() as session:
            for row in rows:
                same = session.scalars(
                    select(Participant.id).where(func.lower(Participant.id) == row["id"].lower())
                ).first()
                if same is not None:
                    raise CordmapError(
                        f"{where}: participant {row['id']} is already registered in {self.name}"
                        f"{'' if same == row['id'] else f' as {same} (ids differ only in case)'}; "
                        "remove the row or use another pseudonym (nothing was written)"
                    )
                session.add(Participant(**row))
                session.flush()
        return [row["id"] for row in rows]

    def participants(self, group: str | None = None) -> list[Participant]:
        with self.transaction() as session:
            query = select(Participant).order_by(Participant.id)
            if group is not None:
                query = query.where(Participant.group == group)
            return list(session.scalars(query))

    def participant(self, participant_id: str) -> dict:
        """Everything registered about one participant, as plain data."""
        with self.transaction() as session:
            p = self._get(session, participant_id)
            return {
                "participant": {name: getattr(p, name) for name, _, _ in PARTICIPANT_FIELDS},
                "scans": [
                    {
                        "id": s.id,
                        "case_dir": s.case_dir,
                        "subject": s.subject,
                        "segmentations": [
                            {
                                "id": g.id,
                                "source": g.source,
                                "labels_file": g.labels_file,
                                "made_by": g.made_by,
                                "reviewed": g.reviewed,
                                "reviewer": g.reviewer,
                            }
                            for g in s.segmentations
                        ],
                    }
                    for s in p.scans
                ],
                "plans": [
                    {
                        "id": x.id,
                        "scan_id": x.scan_id,
                        "paddle": x.paddle,
                        "rostral_edge": x.rostral_edge,
                        "coverage_pct": x.coverage_pct,
                        "plan_file": x.plan_file,
                    }
                    for x in p.plans
                ],
                "surgery": None
                if p.surgery is None
                else {
                    "placement": p.surgery.placement,
                    "coverage_pct": p.surgery.coverage_pct,
                    "duration_min": p.surgery.duration_min,
                },
                "outcomes": [
                    {
                        "measure": o.measure,
                        "value": o.value,
                        "weeks_after_implant": o.weeks_after_implant,
                    }
                    for o in p.outcomes
                ],
            }

    def _get(self, session: Session, participant_id: str) -> Participant:
        p = session.get(Participant, participant_id)
        if p is None:
            raise CordmapError(
                f"participant {participant_id} is not registered in {self.name}; "
                f"see `cordmap study list {self.name}`"
            )
        return p

    # -- scans and segmentations ---------------------------------------------------------
    def add_scan(
        self, participant_id: str, case_dir: str | Path, *, made_by: dict[str, str] | None = None
    ) -> int:
        """Register a case folder of a participant with the label volumes it holds.

        `made_by` names who or which model made each label source ({"manual": "rater-A"}).
        A case imported from a DICOM export that was not de-identified is refused.
        """
        from cordmap.case import Case
        from cordmap.study.deid import require_deidentified

        case = Case.open(case_dir)
        require_deidentified(case)
        root = str(Path(case_dir).resolve())
        with self.transaction() as session:
            self._get(session, participant_id)
            if session.scalar(select(Scan).where(Scan.case_dir == root)) is not None:
                raise CordmapError(
                    f"case {root} is already registered in {self.name}; nothing was written"
                )
            scan = Scan(participant_id=participant_id, case_dir=root, subject=case.subject)
            for source in case.label_sources():
                scan.segmentations.append(
                    Segmentation(
                        source=source,
                        labels_file=case.labels_path(source).name,
                        made_by=(made_by or {}).get(source),
                        reviewed=False,
                    )
                )
            session.add(scan)
            session.flush()
            return scan.id

    def review(self, segmentation_id: int, reviewer: str) -> None:
        """Mark a segmentation as reviewed by `reviewer` (a pseudonym)."""
        if not PSEUDONYM.match(reviewer):
            raise CordmapError(
                f"reviewer '{reviewer}' is not a pseudonym; use letters, digits, - or _"
            )
        with self.transaction() as session:
            segmentation = session.get(Segmentation, segmentation_id)
            if segmentation is None:
                raise CordmapError(
                    f"there is no segmentation {segmentation_id} in {self.name}; "
                    "see `cordmap study show DB PARTICIPANT`"
                )
            segmentation.reviewed = True
            segmentation.reviewer = reviewer

    def case_dirs(self) -> list[str]:
        """Every registered case folder, in registration order."""
        with self.transaction() as session:
            return list(session.scalars(select(Scan.case_dir).order_by(Scan.id)))

    def reviewed_cases(self) -> list[str]:
        """Case folders holding at least one reviewed segmentation (a training set)."""
        with self.transaction() as session:
            query = (
                select(Scan.case_dir)
                .join(Segmentation)
                .where(Segmentation.reviewed)
                .distinct()
                .order_by(Scan.case_dir)
            )
            return list(session.scalars(query))

    # -- plans, surgeries, outcomes ------------------------------------------------------
    def add_plan(
        self,
        participant_id: str,
        *,
        paddle: str | None = None,
        rostral_edge: str | None = None,
        coverage_pct: float | None = None,
        scan_id: int | None = None,
        plan_file: str | None = None,
    ) -> int:
        _check_percent(coverage_pct, "planned coverage")
        with self.transaction() as session:
            self._get(session, participant_id)
            plan = Plan(
                participant_id=participant_id,
                scan_id=scan_id,
                paddle=paddle,
                rostral_edge=rostral_edge,
                coverage_pct=coverage_pct,
                plan_file=plan_file,
            )
            session.add(plan)
            session.flush()
            return plan.id

    def record_surgery(
        self,
        participant_id: str,
        *,
        placement: str | None = None,
        coverage_pct: float | None = None,
        duration_min: float | None = None,
    ) -> None:
        """Record (or correct) the placement achieved, its coverage and the surgery time."""
        _check_percent(coverage_pct, "achieved coverage")
        if duration_min is not None and duration_min <= 0:
            raise CordmapError(f"surgery time {duration_min} min must be positive")
        with self.transaction() as session:
            self._get(session, participant_id)
            session.merge(
                Surgery(
                    participant_id=participant_id,
                    placement=placement,
                    coverage_pct=coverage_pct,
                    duration_min=duration_min,
                )
            )

    def add_outcome(
        self,
        participant_id: str,
        measure: str,
        value: float,
        weeks_after_implant: float | None = None,
    ) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", measure):
            raise CordmapError(
                f"outcome measure '{measure}' must be a lower-case name such as walking_distance_m"
            )
        with self.transaction() as session:
            self._get(session, participant_id)
            session.add(
                Outcome(
                    participant_id=participant_id,
                    measure=measure,
                    value=float(value),
                    weeks_after_implant=weeks_after_implant,
                )
            )

    # -- the cohort as a table ------------------------------------------------------------
    def cohort(self) -> list[dict]:
        """One row per participant: its fields and numeric metrics, for statistics.

        Metrics: `coverage` (achieved, %), `surgery_time` (min), `planned_coverage` (% of
        the participant's latest plan), and each outcome measure by name (its latest value).
        """
        rows = []
        with self.transaction() as session:
            for p in session.scalars(select(Participant).order_by(Participant.id)):
                row = {name: getattr(p, name) for name, _, _ in PARTICIPANT_FIELDS}
                row["coverage"] = p.surgery.coverage_pct if p.surgery else None
                row["surgery_time"] = p.surgery.duration_min if p.surgery else None
                row["planned_coverage"] = p.plans[-1].coverage_pct if p.plans else None
                for outcome in sorted(p.outcomes, key=lambda o: o.weeks_after_implant or 0):
                    row[outcome.measure] = outcome.value
                rows.append(row)
        return rows


def _check_percent(value: float | None, what: str) -> None:
    if value is not None and not 0 <= value <= 100:
        raise CordmapError(f"{what} {value} must be a percentage between 0 and 100")


def write_training_list(registry: Registry, out: str | Path) -> list[str]:
    """Write the case folders with reviewed segmentations as a JSON list (a training set)."""
    import json

    from cordmap.atomic import write_text

    cases = registry.reviewed_cases()
    if not cases:
        raise CordmapError(
            f"{registry.name} has no reviewed segmentations yet; mark them with "
            "`cordmap study review DB SEGMENTATION_ID --reviewer NAME`"
        )
    write_text(out, json.dumps(cases, indent=1) + "\n")
    return cases
