"""`cordmap batch`: a stage over phantom cases on a two-worker local Dask cluster."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from cordmap.anatomy.phantom import make_phantom
from cordmap.case import Case
from cordmap.cli import app
from cordmap.errors import CordmapError
from cordmap.io.nifti import write_nifti
from cordmap.pipeline.imports import import_case
from cordmap.study.batch import run_batch, study_cases
from cordmap.study.registry import Registry, init_registry, validate_participant


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Three small phantom case folders; the third (a copy of the first) has corrupt labels."""
    root = tmp_path_factory.mktemp("batch")
    for seed in range(2):
        phantom = make_phantom(seed, pixel_mm=2.0, fov_mm=(80.0, 80.0))
        image = write_nifti(phantom.image, root / "sources" / f"image-{seed}.nii.gz")
        labels = write_nifti(phantom.labels, root / "sources" / f"labels-{seed}.nii.gz")
        import_case(
            image,
            root / "cases" / f"case-{seed}",
            labels_source=labels,
            subject=f"sub-phantom{seed}",
        )
    shutil.copytree(root / "cases" / "case-0", root / "cases" / "case-2")
    broken = Case.open(root / "cases" / "case-2").labels_path("manual")
    broken.write_bytes(broken.read_bytes()[:200])
    return root / "cases"


def statuses(outcomes) -> dict[str, str]:
    return {o.case.rsplit("/", 1)[-1]: o.status for o in outcomes}


def test_plan_batch_reports_failures_and_skips_what_is_up_to_date(cases):
    seen = []
    first = run_batch(cases, "plan", workers=2, processes=False, on_result=seen.append)
    assert statuses(first) == {"case-0": "done", "case-1": "done", "case-2": "failed"}
    assert len(seen) == 3
    (failure,) = [o for o in first if o.status == "failed"]
    assert "case-2" in failure.message and "not a readable NIfTI" in failure.message
    for name in ("case-0", "case-1"):
        plan = json.loads((cases / name / "plan" / "plan.json").read_text())
        assert plan and "plan" in Case.open(cases / name).manifest["stages"]

    again = run_batch(cases, "plan", workers=2, processes=False)
    assert statuses(again) == {"case-0": "up to date", "case-1": "up to date", "case-2": "failed"}

    (cases / "case-1" / "plan" / "plan.json").write_text("{}")  # an output changed by hand
    result = CliRunner().invoke(
        app, ["batch", str(cases), "--stage", "plan", "--threads"], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 1  # a case failed
    assert "1 done, 1 up to date, 1 failed" in result.output
    assert json.loads((cases / "case-1" / "plan" / "plan.json").read_text()) != {}


def test_cases_come_from_the_study_database(cases, tmp_path):
    db = tmp_path / "study.db"
    init_registry(db)
    with Registry.open(db) as registry:
        registry.add_participants([validate_participant({"id": "P01"})])
        registry.add_scan("P01", cases / "case-0")
    assert study_cases(db) == [str((cases / "case-0").resolve())]
    assert study_cases(cases) == [str((cases / f"case-{n}").resolve()) for n in range(3)]


def test_report_batch_plans_and_writes_each_case_report(cases):
    outcomes = run_batch(cases, "report", workers=2, processes=False)
    assert statuses(outcomes) == {"case-0": "done", "case-1": "done", "case-2": "failed"}
    for seed in range(2):
        case = Case.open(cases / f"case-{seed}")
        assert (case.root / "report" / f"sub-phantom{seed}_report.html").is_file()
        assert {"plan", "report"} <= case.manifest["stages"].keys()
    again = run_batch(cases, "report", workers=2, processes=False)
    assert statuses(again) == {"case-0": "up to date", "case-1": "up to date", "case-2": "failed"}


@pytest.mark.parametrize(
    "stage, options, message",
    [
        ("paint", {}, "unknown stage 'paint'; use one of mesh, plan, view, segment, report"),
        ("segment", {"model": "missing.pt"}, "model file missing.pt does not exist"),
    ],
)
def test_unavailable_stages_are_refused_before_anything_runs(cases, stage, options, message):
    with pytest.raises(CordmapError, match=message):
        run_batch(cases, stage, options=options)
