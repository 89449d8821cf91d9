"""Import a CSV of participants into the study registry, all rows or none.

The CSV has one row per participant and exactly the columns of
`registry.PARTICIPANT_FIELDS` (`id, sex, age_at_implant, years_since_injury,
injury_level, ais_grade, stimulator, group`; empty cells mean unknown). Columns that
would hold identifying data (names, dates of birth, addresses, hospital numbers) are
refused, as are unknown columns, missing columns, duplicate ids and ids already
registered; every row is checked before anything is written.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from cordmap.errors import CordmapError
from cordmap.study.registry import PARTICIPANT_FIELDS, Registry, validate_participant

COLUMNS = tuple(name for name, _, _ in PARTICIPANT_FIELDS)

#: Column names that identify a person: refused whatever else the file holds.
IDENTIFYING = re.compile(
    r"name|birth|dob|address|street|postcode|zip|phone|mobile|e_?mail|mrn|medical_record"
    r"|hospital_number|nhs|ssn|social_security|insurance|passport"
)


def read_participants_csv(path: str | Path) -> list[dict]:
    """Read and validate the participant rows of a CSV file (no database access)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [_column(c) for c in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = list(reader)
    except FileNotFoundError:
        raise CordmapError(f"{path} does not exist") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CordmapError(
            f"{path} is not a readable UTF-8 CSV file ({exc}); save it as CSV UTF-8"
        ) from None
    _check_header(path, header)
    if not rows:
        raise CordmapError(f"{path} has a header but no participant rows")
    participants: list[dict] = []
    seen: dict[str, int] = {}  # lower-case id -> its row
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        if None in row:
            raise CordmapError(f"{path} row {number} has more cells than the header has columns")
        if None in row.values():
            raise CordmapError(
                f"{path} row {number} has fewer cells than the header has columns; "
                "leave unknown cells empty but keep their commas"
            )
        participant = validate_participant(row, where=f"{path} row {number}")
        key = participant["id"].lower()
        if key in seen:
            raise CordmapError(
                f"{path}: participant id {participant['id']} appears twice (rows "
                f"{seen[key]} and {number}); ids must be unique, regardless of case"
            )
        seen[key] = number
        participants.append(participant)
    return participants


def import_participants_csv(registry: Registry, path: str | Path) -> list[str]:
    """Register every participant of the CSV `path` in one transaction; return their ids."""
    participants = read_participants_csv(path)
    return registry.add_participants(participants, where=str(path))


def _column(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _check_header(path: Path, header: list[str]) -> None:
    if not header:
        raise CordmapError(
            f"{path} is empty; the first row must name the columns {', '.join(COLUMNS)}"
        )
    identifying = [c for c in header if IDENTIFYING.search(c)]
    if identifying:
        raise CordmapError(
            f"{path}: column(s) {', '.join(identifying)} would store identifying data, which a "
            "study registry must not hold; delete them (use pseudonymous ids and age at implant) "
            "and import again"
        )
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise CordmapError(
            f"{path}: unknown column(s) {', '.join(unknown)}; the columns are {', '.join(COLUMNS)}"
        )
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise CordmapError(f"{path}: column(s) {', '.join(duplicated)} appear more than once")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise CordmapError(
            f"{path}: missing column(s) {', '.join(missing)}; add them (cells may "
            "be left empty when unknown)"
        )
