"""`cordmap report`: one self-contained HTML page per case, numbers equal to plan.json."""

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cordmap.anatomy.phantom import make_phantom
from cordmap.case import Case
from cordmap.cli import app
from cordmap.errors import CordmapError
from cordmap.io.nifti import read_nifti, write_nifti
from cordmap.pipeline.imports import import_case
from cordmap.pipeline.plan import run_plan
from cordmap.pipeline.report import write_case_report
from cordmap.pipeline.stages import PLAN_FILE
from cordmap.planning.geometry import Centreline
from cordmap.protocol.schema import LabelSchema
from cordmap.report.figures import OVERLAY_ALPHA, label_overlay, overlay_colours
from cordmap.volume import LabelVolume, Volume

WIDE = {"COLUMNS": "200"}


@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory):
    """A phantom case planned with --top 2 and target segments whose plan.json was then
    deleted, and a viewer site beside it: the report must re-plan with the recorded options."""
    root = tmp_path_factory.mktemp("report")
    phantom = make_phantom(0)
    image = write_nifti(phantom.image, root / "t2.nii.gz")
    labels = write_nifti(phantom.labels, root / "labels.nii.gz")
    case_dir = root / "case"
    import_case(image, case_dir, labels_source=labels, subject="sub-01")
    run_plan(case_dir, top=2, targets="L3,L4", sides="left")
    (case_dir / PLAN_FILE).unlink()
    site = root / "site"
    site.mkdir()
    (site / "index.html").write_text("<html></html>")
    result = CliRunner().invoke(app, ["report", str(case_dir), "--site", str(site)], env=WIDE)
    assert result.exit_code == 0, result.output
    page = case_dir / "report" / "sub-01_report.html"
    return case_dir, page, page.read_text(encoding="utf-8"), result.output


def images(page: str) -> list[Image.Image]:
    found = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in found]


def test_report_is_self_contained(phantom_case):
    case_dir, page_path, page, output = phantom_case
    assert f"report written to {page_path}" in output
    sources = re.findall(r"""\bsrc=["']([^"']*)""", page)
    assert len(sources) == 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    links = re.findall(r"""\bhref=["']([^"']*)""", page)
    assert links == ["../../site/index.html"]  # the viewer site, relative to the page
    assert (page_path.parent / links[0]).resolve().is_file()
    assert "http://" not in page and "https://" not in page
    assert f"cordmap view {case_dir}" in page


def test_report_images_decode_and_are_not_blank(phantom_case):
    decoded = images(phantom_case[2])
    assert len(decoded) == 5
    for image in decoded:
        pixels = np.asarray(image.convert("RGB"), dtype=float)
        assert min(image.size) > 200
        assert pixels.std() > 20  # not a blank page
        packed = pixels.reshape(-1, 3) @ np.array([65536.0, 256.0, 1.0])
        assert len(np.unique(packed)) > 50  # drawings, not a flat fill


def test_report_replans_with_the_recorded_options_and_its_table_equals_plan_json(phantom_case):
    case_dir, _, page, _ = phantom_case
    plan = json.loads((case_dir / PLAN_FILE).read_text())
    assert len(plan["candidates"]) == 2  # --top 2, recorded by the earlier plan, was reused
    table = re.search(r"<table id='candidates'>(.*?)</table>", page).group(1)
    rows = re.findall(
        r"<tr><td>(\d+)</td><td class='text'>(.*?)</td><td class='text'>(.*?)</td>"
        r"<td>([\d.]+)</td><td>([\d.]+)</td><td class='volume'>([\d.]+)</td>"
        r"<td class='length'>([\d.]+)</td>",
        table,
    )
    assert len(rows) == 2
    for row, candidate in zip(rows, plan["candidates"]):
        assert int(row[0]) == candidate["rank"]
        assert row[1] == candidate["rostral_edge"] and row[2] == candidate["caudal_edge"]
        assert float(row[3]) == pytest.approx(candidate["rostral_mm"], abs=0.05)
        assert float(row[5]) == pytest.approx(candidate["volume_pct"], abs=0.005)
        assert float(row[6]) == pytest.approx(candidate["length_pct"], abs=0.005)
    segments = re.search(r"<table id='segments'>(.*?)</table>", page).group(1)
    for entry in plan["candidates"][0]["segments"]:
        assert (
            f"<th class='text'>{entry['segment']}</th><td>{entry['covered_pct']:.1f}</td>"
            in segments
        )
    assert plan["enlargement"]["segments"] in page and "labelled segments" in page


def test_report_contact_tables_and_target_ranking_equal_plan_json(phantom_case):
    """The contacts of the best placement by volume and of the best for the targets (the
    recorded --targets L3,L4 --sides left), the target ranking and the comparison of the two
    rankings: the numbers of plan.json."""
    case_dir, _, page, _ = phantom_case
    plan = json.loads((case_dir / PLAN_FILE).read_text())
    assert plan["targets"]["segments"] == ["L3", "L4"] and plan["targets"]["sides"] == ["left"]
    for table_id, placement in (
        ("contacts", plan["candidates"][0]),
        ("target-contacts", plan["targets"]["candidates"][0]),
    ):
        table = re.search(rf"<table id='{table_id}'>(.*?)</table>", page).group(1)
        rows = re.findall(
            r"<tr><td>(\d+)</td><td>(\d+)</td><td class='text'>(.*?)</td>"
            r"<td class='text'>(.*?)</td><td>([-+\d.]+)</td><td>([-+\d.]+)</td>"
            r"<td class='dcsf'>([\d.]+)</td></tr>",
            table,
        )
        assert len(rows) == len(placement["contacts"]) == 16
        for row, contact in zip(rows, placement["contacts"]):
            assert int(row[0]) == contact["contact"] and int(row[1]) == contact["row"]
            assert row[2] == (contact["segment"] or "-") and row[3] == contact["side"]
            assert float(row[4]) == pytest.approx(contact["lateral_mm"], abs=0.005)
            assert float(row[5]) == pytest.approx(contact["entry_zone_offset_mm"], abs=0.005)
            assert float(row[6]) == pytest.approx(contact["dcsf_mm"], abs=0.005)
    ranking = re.search(r"<table id='targets'>(.*?)</table>", page).group(1)
    scores = re.findall(r"<td class='score'>([-\d.]+)</td>", ranking)
    assert [float(x) for x in scores] == [c["target_score"] for c in plan["targets"]["candidates"]]
    assert "reach L3 left" in ranking and "reach L3 right" not in ranking
    comparison = re.search(r"<p id='comparison'>(.*?)</p>", page).group(1)
    diff = plan["targets"]["comparison"]
    assert ("agree" in comparison) and f"{diff['distance_mm']:.1f} mm apart" in comparison
    assert ("disagree" in comparison) == (not diff["agree"])


def test_report_stage_is_recorded(phantom_case):
    case_dir, page_path, _, _ = phantom_case
    stage = Case.open(case_dir).manifest["stages"]["report"]
    assert stage["outputs"][0]["path"] == "report/sub-01_report.html"
    assert [e["path"] for e in stage["inputs"]][-1] == PLAN_FILE


def test_case_without_labels_is_refused_and_nothing_written(tmp_path, phantom_case):
    case_dir = tmp_path / "case"
    import_case(phantom_case[0] / "sub-01_T2w.nii.gz", case_dir, subject="sub-01")
    before = sorted(p.relative_to(case_dir) for p in case_dir.rglob("*"))
    manifest = (case_dir / "case.json").read_text()
    with pytest.raises(CordmapError, match="has no labels.*cordmap segment"):
        write_case_report(case_dir)
    result = CliRunner().invoke(app, ["report", str(case_dir)], env=WIDE)
    assert result.exit_code == 1 and "has no labels" in result.output
    assert sorted(p.relative_to(case_dir) for p in case_dir.rglob("*")) == before
    assert (case_dir / "case.json").read_text() == manifest


def test_wrong_out_suffix_and_missing_site_are_refused(tmp_path, phantom_case):
    case_dir = phantom_case[0]
    with pytest.raises(CordmapError, match="must end in .html"):
        write_case_report(case_dir, out=tmp_path / "report.pdf")
    with pytest.raises(CordmapError, match="not a viewer site"):
        write_case_report(case_dir, out=tmp_path / "r.html", site=tmp_path / "nowhere")
    assert not list(tmp_path.iterdir())


def test_overlay_blends_the_schema_colour_at_the_cord_of_a_real_subject(data_dir):
    """sct-t2 (real T2 and its expert cord mask): the overlay is the cord's schema colour at
    the cord's voxels and the untouched MRI elsewhere."""
    image = read_nifti(data_dir / "sct-t2" / "t2.nii.gz")
    mask = read_nifti(data_dir / "sct-t2" / "t2_seg-manual.nii.gz")
    schema = LabelSchema.load()
    cord = schema.find("cord")
    labels = LabelVolume((mask.array > 0).astype(np.uint16) * cord.id, mask.affine, schema=schema)
    colours = overlay_colours(labels)
    assert colours == {cord.id: tuple(c / 255 for c in cord.colour)}
    k = int(np.argmax((labels.array > 0).sum(axis=(0, 1))))
    gray = image.array[:, :, k] / image.array.max()
    rgb = label_overlay(gray, labels.array[:, :, k], colours)
    inside = labels.array[:, :, k] == cord.id
    assert inside.sum() > 10
    expected = (1 - OVERLAY_ALPHA) * gray[inside][:, None] + OVERLAY_ALPHA * np.array(
        colours[cord.id]
    )
    np.testing.assert_allclose(rgb[inside], expected)
    np.testing.assert_allclose(rgb[~inside], np.repeat(gray[~inside][:, None], 3, axis=1))


def test_dorsal_strip_lies_behind_a_straight_cord():
    s = np.arange(0.0, 101.0)
    points = np.column_stack([np.full_like(s, 3.0), np.full_like(s, 7.0), -s])  # down along -z
    tangents = np.tile([0.0, 0.0, -1.0], (len(s), 1))
    strip = Centreline(s, points, tangents).dorsal_strip(10.0, 56.5, width=10.0, depth=6.0)
    assert strip.shape[1:] == (2, 3)
    np.testing.assert_allclose(strip[:, :, 1], 1.0)  # 6 mm posterior of y = 7
    np.testing.assert_allclose(np.sort(strip[0, :, 0]), [-2.0, 8.0])  # 10 mm wide about x = 3
    np.testing.assert_allclose(strip[[0, -1], 0, 2], [-10.0, -56.5])


def test_a_plan_made_with_a_paddle_file_is_not_silently_replanned(
    tmp_path, phantom_case, one_row_paddle_file
):
    import shutil

    case_dir = shutil.copytree(phantom_case[0], tmp_path / "case")
    shutil.rmtree(case_dir / "report")
    paddles = one_row_paddle_file
    run_plan(case_dir, paddle="Mine 1x4", paddles_file=paddles)
    (case_dir / PLAN_FILE).unlink()
    with pytest.raises(CordmapError, match="paddle file mine.json .* --paddles mine.json"):
        write_case_report(case_dir)
    assert not (case_dir / "report").exists() and not (case_dir / PLAN_FILE).exists()


def test_candidate_paddles_become_toggleable_annotation_layers(phantom_case):
    """The viewer state of a planned case: one annotation layer per candidate, its outline
    on the dorsal midline at the plan's arc lengths and a point per contact, at the contact
    map's arc length and lateral offset, described by its segment, side and dCSF; the image
    layer kept."""
    from cordmap.planning.files import read_result
    from cordmap.planning.geometry import candidate_strips, measure_cord
    from cordmap.viewer.precomputed import world_to_output
    from cordmap.viewer.state import paddle_name, viewer_state

    case = Case.open(phantom_case[0])
    plan = read_result(case.root / PLAN_FILE)
    image, labels = case.image(), case.labels()
    geometry = measure_cord(labels)
    paddles = candidate_strips(geometry, plan)
    state = viewer_state(image, labels, paddles=paddles)
    names = [layer["name"] for layer in state["layers"]]
    assert names == [paddle_name(c) for c in plan.candidates] + [
        "MRI",
        "cord and roots",
        "vertebrae",
    ]
    assert state["selectedLayer"]["layer"] == "cord and roots"
    for layer, (candidate, strip, contacts) in zip(state["layers"], paddles):
        assert layer["type"] == "annotation" and layer["source"]["url"] == "local://annotations"
        assert layer["visible"] == (candidate.rank == 1)
        lines = [a for a in layer["annotations"] if a["type"] == "line"]
        points = [a for a in layer["annotations"] if a["type"] == "point"]
        assert len(lines) == 2 * len(strip)  # the closed outline
        first = np.array(lines[0]["pointA"])
        np.testing.assert_allclose(first, world_to_output(image, strip[0, 0]), atol=2e-3)
        # the array's ends sit at the plan's arc lengths, behind the cord
        s, _ = geometry.centreline.project(strip[[0, -1]].mean(axis=1))
        ends = [candidate.coverage.rostral, candidate.coverage.caudal]
        np.testing.assert_allclose(s, ends, atol=0.05)
        middle = strip.mean(axis=1)
        behind = middle - geometry.centreline.point(geometry.centreline.project(middle)[0])
        assert (behind[:, 1] < -3).all()  # posterior of the centreline by more than the radius
        np.testing.assert_allclose(
            np.linalg.norm(strip[:, 0] - strip[:, 1], axis=1), plan.paddle.width_mm
        )
        # one point per contact, where the contact map puts it, described by it
        mapped = candidate.contacts
        assert len(points) == len(contacts) == plan.paddle.contacts == len(mapped)
        np.testing.assert_allclose(
            [p["point"] for p in points], [world_to_output(image, c) for c in contacts], atol=2e-3
        )
        s, _ = geometry.centreline.project(contacts)
        np.testing.assert_allclose(s, [c.s_mm for c in mapped], atol=0.05)
        _, right, _ = geometry.centreline.frame(s)
        lateral = np.einsum("ij,ij->i", contacts - geometry.centreline.point(s), right)
        np.testing.assert_allclose(lateral, [c.lateral_mm for c in mapped], atol=0.05)
        for point, contact in zip(points, mapped):
            assert point["description"].startswith(
                f"contact {contact.number}: {contact.segment} {contact.side}, dCSF"
            )


def test_figures_of_an_estimated_enlargement(phantom_case, tmp_path):
    """Segments not labelled (all cord voxels plain cord): the enlargement is estimated and
    the figures still show its extent."""
    from cordmap.planning.planner import Planner
    from cordmap.report.case_report import draw_figures, render_html

    case = Case.open(phantom_case[0])
    labels = case.labels()
    schema = labels.schema
    array = labels.array.copy()
    array[np.isin(array, [label.id for label in schema.of_class("segment")])] = schema.find(
        "cord"
    ).id
    labels = LabelVolume(array, labels.affine, schema=schema)
    plan = Planner.prepare(labels).plan(top=1)
    assert plan.enlargement.estimated
    from cordmap.mesh import mesh_labels

    cord = [schema.find("cord").id]
    pictures = draw_figures(case.image(), labels, plan, mesh_labels(labels, ids=cord))
    for png in pictures.values():
        assert np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float).std() > 20
    page = render_html("sub-01", plan, pictures, case.root, tmp_path / "r.html", None)
    assert "estimated from the conus tip" in page


def test_the_viewer_command_is_shell_quoted():
    import html
    import shlex

    from cordmap.report.case_report import _viewer

    root = Path("/tmp/my case; rm -rf ~")
    text = _viewer(root, root / "report" / "r.html", None)
    assert html.escape(f"cordmap view {shlex.quote(str(root))}") in text
    assert "cordmap view /tmp/my case;" not in text


def test_a_case_the_planner_refuses_gets_a_report_without_a_plan(tmp_path, phantom_case):
    """The image stops inside the enlargement (its top at the L2 segment): the report says
    why there is no plan and still shows the labels; a plan.json left from other labels is
    removed, as it no longer holds for the case."""
    case = Case.open(phantom_case[0])
    image, labels = case.image(), case.labels()
    l2 = labels.array == labels.schema.find("segment", "L2").id
    top = int(np.median(np.nonzero(l2)[2]))
    affine = labels.affine  # voxel axis 2 runs superior: keep the slices below `top`
    write_nifti(Volume(image.array[:, :, :top], affine), tmp_path / "image.nii.gz")
    write_nifti(
        LabelVolume(labels.array[:, :, :top], affine, schema=labels.schema),
        tmp_path / "labels.nii.gz",
    )
    case_dir = tmp_path / "case"
    import_case(tmp_path / "image.nii.gz", case_dir, labels_source=tmp_path / "labels.nii.gz")
    (case_dir / PLAN_FILE).parent.mkdir(parents=True)
    (case_dir / PLAN_FILE).write_bytes((phantom_case[0] / PLAN_FILE).read_bytes())
    result = CliRunner().invoke(app, ["report", str(case_dir)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "no plan:" in result.output and "not labelled" in result.output
    page = (case_dir / "report" / "sub-01_report.html").read_text(encoding="utf-8")
    assert "id='no-plan'" in page and "segments L1" in page
    assert "id='candidates'" not in page and "best placement" not in page
    pictures = images(page)
    assert len(pictures) == 3  # 3D view, sagittal and axial slices
    for picture in pictures:
        assert np.asarray(picture.convert("RGB"), dtype=float).std() > 20
    assert not (case_dir / PLAN_FILE).exists()
    stage = Case.open(case_dir).manifest["stages"]["report"]
    assert PLAN_FILE not in [e["path"] for e in stage["inputs"]]


def test_the_sagittal_figure_marks_the_disc_the_count_started_from(phantom_case):
    """The automatic count's starting disc (here the phantom's L5/S1) is marked in navy at
    its centre, so a clinician sees at a glance whether it is the last mobile disc."""
    from cordmap.report.figures import slice_figures

    case = Case.open(phantom_case[0])
    image, labels = case.image(), case.labels()
    disc = labels.schema.find("disc", "L5-S").id
    centre = labels.world(np.argwhere(np.asarray(labels.array) == disc).mean(axis=0)[None])[0]
    plain, _ = slice_figures(image, labels, [], [])
    marked, _ = slice_figures(image, labels, [], [], anchor_disc=(list(centre), "L5/S"))
    before = np.asarray(Image.open(io.BytesIO(plain)).convert("RGB"), dtype=int)
    after = np.asarray(Image.open(io.BytesIO(marked)).convert("RGB"), dtype=int)
    assert before.shape == after.shape
    navy = (after[..., 2] > 100) & (after[..., 0] < 40) & (after[..., 1] < 40)
    changed = np.abs(after - before).sum(axis=2) > 60
    assert (navy & changed).sum() > 20  # the marker and its leader line
