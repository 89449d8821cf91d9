"""The registry on PostgreSQL: a throw-away server (skipped where PostgreSQL or psycopg is absent)."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from cordmap.errors import CordmapError
from cordmap.study import migrations
from cordmap.study.csvimport import COLUMNS, import_participants_csv
from cordmap.study.registry import Base, Registry, init_registry, validate_participant

PORT = 54329


def _as_server_user() -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user then."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        pytest.skip("running as root without runuser to start PostgreSQL as its own user")
    try:
        subprocess.run(["id", "postgres"], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        pytest.skip("running as root and there is no postgres user to start PostgreSQL")
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="module")
def postgres_url():
    """A server on a Unix socket only, in a temporary folder the server's user can enter."""
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed")
    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not on PATH")
    prefix = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="cordmap-pg-"))
    try:
        if prefix:
            shutil.chown(root, "postgres")
        data = root / "data"
        subprocess.run(
            [*prefix, "initdb", "--no-sync", "-D", str(data), "-A", "trust", "-U", "cordmap"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *prefix,
                "pg_ctl",
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-w",
                "start",
                "-o",
                f"-k {root} -p {PORT} -c listen_addresses='' -c fsync=off",
            ],
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql+psycopg://cordmap@/postgres?host={root}&port={PORT}"
        finally:
            subprocess.run(
                [*prefix, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_registry_works_on_postgresql(postgres_url, tmp_path, monkeypatch):
    assert init_registry(postgres_url).applied == [1, 2]
    inspector = inspect(create_engine(postgres_url))
    for table in Base.metadata.sorted_tables:
        assert {c["name"] for c in inspector.get_columns(table.name)} == {
            c.name for c in table.columns
        }

    csv = tmp_path / "participants.csv"
    csv.write_text(",".join(COLUMNS) + "\nP01,F,34,5,T4,A,S,a\nP02,M,30,2,C5,B,S,b\n")
    with Registry.open(postgres_url) as registry:
        assert import_participants_csv(registry, csv) == ["P01", "P02"]
        csv.write_text(",".join(COLUMNS) + "\nP03,F,34,5,T4,A,S,a\nP01,M,30,2,C5,B,S,b\n")
        with pytest.raises(CordmapError, match="P01 is already registered"):
            import_participants_csv(registry, csv)
        assert [p.id for p in registry.participants()] == ["P01", "P02"]
        registry.record_surgery("P01", coverage_pct=70.0, duration_min=180.0)
        registry.record_surgery("P01", coverage_pct=75.0, duration_min=170.0)  # a correction
        assert registry.cohort()[0]["coverage"] == 75.0

    def broken(conn):
        conn.exec_driver_sql("create table half_done (x integer)")
        raise RuntimeError("disk full")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, (3, "broken", broken)])
    monkeypatch.setattr(migrations, "LATEST_VERSION", 3)
    with pytest.raises(RuntimeError):
        init_registry(postgres_url)
    assert "half_done" not in inspect(create_engine(postgres_url)).get_table_names()
    with pytest.raises(CordmapError, match="older than this cordmap's 3"):
        Registry.open(postgres_url)
    monkeypatch.undo()
    with Registry.open(postgres_url) as registry:
        assert registry.add_participants([validate_participant({"id": "P09"})]) == ["P09"]
