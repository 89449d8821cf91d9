"""The `cordmap study` commands: one workflow from an empty database to the report."""

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from cordmap.cli import app
from cordmap.study.csvimport import COLUMNS
from cordmap.study.registry import Registry, init_registry, validate_participant

ENV = {"COLUMNS": "200"}


def cordmap(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env=ENV)


def ok(*args):
    result = cordmap(*args)
    assert result.exit_code == 0, result.output
    return result.output


def fails(*args, message):
    result = cordmap(*args)
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split())
    return result.output


def test_registry_workflow(tmp_path):
    db = tmp_path / "study.db"
    fails("study", "list", db, message=f"create it with `cordmap study init {db}`")
    assert "migrations applied: 1, 2" in ok("study", "init", db)
    assert "already up to date" in ok("study", "init", db)
    ok(
        "study",
        "add",
        db,
        "--id",
        "P01",
        "--sex",
        "F",
        "--age",
        "34",
        "--injury-level",
        "T4",
        "--ais",
        "A",
        "--group",
        "3d",
    )
    fails("study", "add", db, "--id", "P01", message="P01 is already registered")
    fails(
        "study", "add", db, "--id", "P02", "--ais", "Z", message="ais_grade 'Z' is not an AIS grade"
    )

    csv = tmp_path / "participants.csv"
    csv.write_text(",".join(COLUMNS) + ",name\nP02,M,40,3,C6,B,S,conv,John\n")
    fails("study", "import-csv", db, csv, message="name would store identifying data")
    csv.write_text(",".join(COLUMNS) + "\nP02,M,40,3,C6,B,S,conv\nP03,F,29,1,T10,C,S,conv\n")
    assert "registered 2 participants" in ok("study", "import-csv", db, csv)

    listing = ok("study", "list", db)
    assert all(p in listing for p in ("P01", "P02", "P03")) and "T10" in listing
    assert "P03" not in ok("study", "list", db, "--group", "3d")

    ok("study", "plan", db, "P01", "--coverage", "92.5", "--rostral-edge", "mid-T11")
    ok("study", "surgery", db, "P01", "--coverage", "88", "--time", "175", "--placement", "T11")
    ok("study", "outcome", db, "P01", "walking_distance_m", "35", "--weeks", "12")
    shown = json.loads(ok("study", "show", db, "P01"))
    assert shown["participant"]["injury_level"] == "T4"
    assert shown["plans"][0]["rostral_edge"] == "mid-T11"
    assert shown["surgery"] == {"placement": "T11", "coverage_pct": 88.0, "duration_min": 175.0}
    assert shown["outcomes"] == [
        {"measure": "walking_distance_m", "value": 35.0, "weeks_after_implant": 12.0}
    ]
    fails("study", "show", db, "P09", message="P09 is not registered")


def test_newer_database_gives_one_line_error(tmp_path):
    db = tmp_path / "study.db"
    ok("study", "init", db)
    with sqlite3.connect(db) as conn:
        conn.execute("insert into schema_version values (7, 'future', 'x')")
    output = fails("study", "list", db, message="schema version 7, newer than this cordmap")
    assert "Traceback" not in output


def test_stats_and_report(tmp_path):
    db = tmp_path / "study.db"
    init_registry(db)
    cohort = [
        ("3d", 70, 150),
        ("3d", 66, 170),
        ("3d", 68, 160),
        ("conv", 60, 200),
        ("conv", 63, 190),
        ("conv", 55, 230),
    ]
    with Registry.open(db) as registry:
        registry.add_participants(
            [
                validate_participant({"id": f"P{n}", "group": group, "sex": "FM"[n % 2]})
                for n, (group, _, _) in enumerate(cohort)
            ]
        )
        for n, (_, coverage, minutes) in enumerate(cohort):
            registry.record_surgery(f"P{n}", coverage_pct=coverage, duration_min=minutes)
    report, results = tmp_path / "welch.html", tmp_path / "welch.json"
    printed = ok(
        "study",
        "stats",
        db,
        "--metric",
        "coverage",
        "--test",
        "welch",
        "--report",
        report,
        "--json",
        results,
    )
    assert "cohen-d" in printed and "difference in means" in printed
    (saved,) = json.loads(results.read_text())
    assert saved["test"] == "welch" and saved["metric"] == "coverage"
    assert [g["n"] for g in saved["groups"]] == [3, 3]
    assert saved["difference"] == pytest.approx(68 - 178 / 3)
    assert "Welch" in report.read_text()
    assert "p = 0.100" in ok("study", "stats", db)  # Mann-Whitney, 3 vs 3 separated: exact 2/20
    fails("study", "stats", db, "--by", "sex", "--groups", "F,Q", message="there is no sex 'Q'")
    fails("study", "stats", db, "--test", "anova", message="unknown test 'anova'")


def test_demo_refuses_a_folder_in_use(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    fails("study", "demo", tmp_path, message="is not an empty folder")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_stats_needs_two_named_groups(tmp_path):
    db = tmp_path / "study.db"
    ok("study", "init", db)
    fails("study", "stats", db, "--groups", "a", message="--groups 'a' must name two groups")
