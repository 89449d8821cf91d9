"""The pipeline layer: a stage's current output is reused by the stages that read it, and
`cordmap batch` skips exactly what the pipeline's freshness check finds current."""

import shutil

import numpy as np
import pytest

from cordmap.anatomy.phantom import make_phantom
from cordmap.case import Case
from cordmap.errors import CordmapError
from cordmap.io.nifti import write_nifti
from cordmap.pipeline.imports import import_case
from cordmap.pipeline.mesh import mesh_case
from cordmap.pipeline.plan import run_plan
from cordmap.pipeline.report import write_case_report
from cordmap.pipeline.stages import PLAN_FILE, is_current, stage_inputs
from cordmap.study.batch import run_case
from cordmap.volume import LabelVolume


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A small phantom case, imported with its labels and nothing else."""
    root = tmp_path_factory.mktemp("pipeline")
    phantom = make_phantom(0, pixel_mm=2.0, fov_mm=(80.0, 80.0))
    image = write_nifti(phantom.image, root / "t2.nii.gz")
    labels = write_nifti(phantom.labels, root / "labels.nii.gz")
    import_case(image, root / "case", labels_source=labels)
    return root / "case"


def _changed_labels(case: Case) -> None:
    """Rewrite the case's manual labels with one labelled voxel made background."""
    labels = case.labels("manual")
    array = np.asarray(labels.array).copy()
    array[tuple(np.argwhere(array != 0)[0])] = 0
    write_nifti(LabelVolume(array, labels.affine, schema=labels.schema), case.labels_path("manual"))


def test_the_report_reads_the_mesh_stage_s_meshes_and_the_current_plan(
    imported, tmp_path, monkeypatch
):
    from cordmap.mesh import files, mesh_labels

    case_dir = shutil.copytree(imported, tmp_path / "case")
    calls = []
    monkeypatch.setattr(
        files, "mesh_labels", lambda *a, **k: calls.append(1) or mesh_labels(*a, **k)
    )
    mesh_case(case_dir, formats=("glb", "stl"), smoothing=5)  # not the default parameters
    planned = run_plan(case_dir, top=2)
    planned_at = (case_dir / PLAN_FILE).stat().st_mtime_ns

    report = write_case_report(case_dir)
    assert len(calls) == 1  # the report read the mesh stage's meshes: no meshing again
    assert (case_dir / PLAN_FILE).stat().st_mtime_ns == planned_at  # nor planning again
    assert report.plan.to_json() == planned.result.to_json()
    stage = Case.open(case_dir).manifest["stages"]["report"]
    assert [e["path"] for e in stage["inputs"]][-1] == PLAN_FILE


def test_batch_skips_exactly_what_the_pipeline_finds_current(imported, tmp_path):
    case_dir = shutil.copytree(imported, tmp_path / "case")
    mesh_case(case_dir, formats=("glb", "stl"))  # a batch's mesh stage would write glb only
    run_plan(case_dir, top=2)

    def current(stage: str) -> bool:
        case = Case.open(case_dir)
        return is_current(case, stage, stage_inputs(case, stage))

    assert current("mesh") and current("plan") and not current("view")
    for stage in ("mesh", "plan"):
        assert run_case(stage, str(case_dir), {}).status == "up to date"
    assert run_case("view", str(case_dir), {}).status == "done"
    assert current("view")
    assert run_case("view", str(case_dir), {}).status == "up to date"

    _changed_labels(Case.open(case_dir))
    for stage in ("mesh", "plan", "view"):
        assert not current(stage)
    assert run_case("mesh", str(case_dir), {}).status == "done"
    assert current("mesh")


def test_the_report_uses_a_current_plan_made_with_a_paddle_file_and_refuses_a_stale_one(
    imported, tmp_path, one_row_paddle_file
):
    case_dir = shutil.copytree(imported, tmp_path / "case")
    paddles = one_row_paddle_file
    run_plan(case_dir, paddle="Mine 1x4", paddles_file=paddles)
    assert write_case_report(case_dir).plan.paddle.name == "Mine 1x4"  # not re-planned

    _changed_labels(Case.open(case_dir))
    with pytest.raises(CordmapError, match="paddle file mine.json .* --paddles mine.json"):
        write_case_report(case_dir)


def test_the_viewer_shows_the_plan_s_paddles_until_the_labels_change(imported, tmp_path):
    from cordmap.pipeline.view import build_case_viewer, stale_plan_note

    case_dir = shutil.copytree(imported, tmp_path / "case")
    planned = run_plan(case_dir, top=2)
    _, state = build_case_viewer(Case.open(case_dir))
    annotations = [layer for layer in state["layers"] if layer["type"] == "annotation"]
    assert len(annotations) == len(planned.result.candidates) == 2
    assert stale_plan_note(case_dir) is None

    _changed_labels(Case.open(case_dir))  # e.g. segmented again: the plan is stale
    _, state = build_case_viewer(Case.open(case_dir))
    assert not [layer for layer in state["layers"] if layer["type"] == "annotation"]
    assert (case_dir / PLAN_FILE).is_file()  # left for the user, not shown
    assert "cordmap plan" in stale_plan_note(case_dir)
    run_plan(case_dir, top=2)  # planned again: shown again
    _, state = build_case_viewer(Case.open(case_dir))
    assert len([layer for layer in state["layers"] if layer["type"] == "annotation"]) == 2
