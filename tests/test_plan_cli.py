"""`cordmap plan` and `cordmap assess`: files written, case provenance, bad input."""

import json
import re

import numpy as np
import pytest
from test_plan_assess import VERTEBRAE
from test_plan_geometry import straight
from typer.testing import CliRunner

from cordmap.case import Case, sha256
from cordmap.cli import app
from cordmap.io.nifti import write_nifti
from cordmap.pipeline.imports import import_case
from cordmap.planning.planner import Planner
from cordmap.volume import LabelVolume, Volume

WIDE = {"COLUMNS": "200"}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env=WIDE)


@pytest.fixture(scope="module")
def labels():
    return straight(vertebrae=VERTEBRAE)


@pytest.fixture()
def labels_file(tmp_path, labels):
    return write_nifti(labels, tmp_path / "labels.nii.gz")


def test_plan_a_label_file(tmp_path, labels, labels_file):
    out = tmp_path / "plan.json"
    result = invoke("plan", labels_file, "--out", out, "--top", 2, "--enlargement", "L1..S1")
    assert result.exit_code == 0, result.output
    assert "#1" in result.output and "#2" in result.output and f"{out} written" in result.output
    plan = json.loads(out.read_text())
    expected = Planner.prepare(labels, enlargement="L1..S1").plan(top=2)
    assert plan["candidates"] == expected.to_json()["candidates"]
    assert plan["enlargement"]["segments"] == "L1..S1" and not plan["enlargement"]["estimated"]
    assert plan["candidates"][0]["rostral_edge"] in result.output
    assert "segments under #1: L1 " in result.output
    assert len(plan["curve"]["rostral_mm"]) == len(plan["curve"]["volume_pct"]) > 10
    assert plan["cord"]["segments_mm"]["T12"] == [0.0, 21.0]
    assert plan["cord"]["segments_mm"]["S5"] == [99.0, 105.0]
    assert plan["levels"]["vertebrae"]["T12"] == [30.0, 57.0]


def test_plan_and_assess_a_case_record_their_stage(tmp_path, labels, labels_file):
    image = write_nifti(
        Volume(labels.array.astype(np.float32), labels.affine), tmp_path / "t2.nii.gz"
    )
    case_dir = tmp_path / "case"
    import_case(image, case_dir, labels_source=labels_file)
    assert invoke("plan", case_dir).exit_code == 0
    assert (case_dir / "plan" / "plan.json").is_file()
    again = invoke("plan", case_dir)
    assert again.exit_code == 0 and "up to date" in again.output
    assert "up to date" not in invoke("plan", case_dir, "--top", 2).output
    # the targets are parameters of the stage: a change re-plans, the same ones do not
    result = invoke("plan", case_dir, "--targets", "L3,L4", "--sides", "left")
    assert result.exit_code == 0 and "up to date" not in result.output, result.output
    assert "by target score (L3, L4; left)" in result.output
    assert "dCSF" in result.output and "no CSF label in the labels" in result.output
    assert "up to date" in invoke("plan", case_dir, "--targets", "L3,L4", "--sides", "left").output
    assert (
        "up to date" not in invoke("plan", case_dir, "--targets", "L3,L5", "--sides", "left").output
    )
    parameters = Case.open(case_dir).manifest["stages"]["plan"]["parameters"]
    assert parameters["targets"] == "L3,L5" and parameters["sides"] == "left"
    planned = json.loads((case_dir / "plan" / "plan.json").read_text())
    assert planned["targets"]["segments"] == ["L3", "L5"] and planned["targets"]["sides"] == [
        "left"
    ]
    result = invoke(
        "assess", case_dir, "--rostral", "T12 upper endplate", "--compare", "T12 middle"
    )
    assert result.exit_code == 0, result.output
    assert "13.5 mm" in result.output
    stages = Case.open(case_dir).manifest["stages"]
    assert stages["plan"]["outputs"][0]["path"] == "plan/plan.json"
    assert stages["plan"]["inputs"][0]["path"].endswith("desc-manual_dseg.nii.gz")
    assert stages["assess"]["parameters"]["rostral"] == "T12 upper endplate"
    assessment = json.loads((case_dir / "plan" / "assessment.json").read_text())
    assert assessment["placement"]["rostral_mm"] == pytest.approx(30.0)


def _no_cord(labels):
    array = labels.array.copy()
    array[(array >= 100) & (array < 200)] = 0
    return LabelVolume(array, labels.affine, schema=labels.schema)


def _cut(labels):  # the image stops at S 30: S1 ends on the bottom slice, S2..S5 are gone
    affine = labels.affine.copy()
    affine[2, 3] += 30.0
    return LabelVolume(labels.array[:, :, 10:], affine, schema=labels.schema)


@pytest.mark.parametrize(
    "make, options, message",
    [
        (_no_cord, [], "no spinal cord label"),
        (_cut, ["--enlargement", "L1..S1"], "bottom of the image"),
        (_cut, [], "S2, S3, S4, S5|S2 of the enlargement"),
        (None, ["--paddle", "Penta"], "unknown paddle model 'Penta'"),
        (None, ["--paddle", "Long", "--paddles", "LONG"], "longer than the 105.0 mm of cord"),
        (None, ["--enlargement", "S2..L1"], "runs upwards"),
        (None, ["--protocol", "MISSING"], "protocol file .*missing.json does not exist"),
        (None, ["--targets", "L2,S3"], "target S3 is outside the enlargement L1..S2"),
        (None, ["--targets", "L2", "--sides", "front"], "--sides must be both, left or right"),
        (None, ["--sides", "left"], "--sides chooses the sides of --targets"),
        (None, ["--paddle", "Bare", "--paddles", "BARE"], "'Bare' has no contact geometry"),
    ],
)
def test_bad_plan_input_writes_nothing(tmp_path, labels, make, options, message):
    path = write_nifti(make(labels) if make else labels, tmp_path / "labels.nii.gz")
    before = sha256(path)
    long_paddle = tmp_path / "long.json"
    long_paddle.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "name": "Long",
                        "array_length_mm": 120,
                        "width_mm": 8,
                        "rows": [
                            {
                                "offset_mm": 60,
                                "lateral_mm": [0],
                                "contact_length_mm": 3,
                                "contact_width_mm": 2,
                            }
                        ],
                    }
                ]
            }
        )
    )
    bare = tmp_path / "bare.json"
    bare.write_text(
        json.dumps({"models": [{"name": "Bare", "array_length_mm": 40, "width_mm": 8}]})
    )
    replace = {
        "LONG": str(long_paddle),
        "MISSING": str(tmp_path / "missing.json"),
        "BARE": str(bare),
    }
    options = [replace.get(o, o) for o in options]
    out = tmp_path / "plan.json"
    result = invoke("plan", path, "--out", out, *options)
    assert result.exit_code == 1
    assert "error:" in result.output
    assert re.search(message, " ".join(result.output.split())), result.output
    assert not out.exists() and sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["labels.nii.gz", "long.json", "bare.json"]
    )


def test_assess_landmark_on_an_absent_vertebra_writes_nothing(tmp_path, labels_file):
    out = tmp_path / "assessment.json"
    result = invoke("assess", labels_file, "--rostral", "T9 middle", "--out", out)
    assert result.exit_code == 1
    assert "names vertebra T9, which is not in the labels" in " ".join(result.output.split())
    assert not out.exists()
    assert invoke("plan", labels_file).exit_code == 1  # a label file needs --out


def test_plan_file_returns_the_plan_and_its_path(tmp_path, labels_file):
    from cordmap.planning.files import plan_file

    plan, path = plan_file(labels_file, tmp_path / "p.json", top=1)
    assert path == tmp_path / "p.json" and json.loads(path.read_text()) == plan.to_json()
