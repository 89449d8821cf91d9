"""SIGKILL at any moment leaves the old state or the new one: a stage killed part-way
re-runs and its outputs equal an uninterrupted run's."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cordmap.anatomy.phantom import make_phantom, write_phantom

CORDMAP = [str(Path(sys.executable).parent / "cordmap")]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    write_phantom(make_phantom(2, n_slices=48), root / "phantom", dicom=False)
    image = next((root / "phantom").glob("*_T2w.nii.gz"))
    labels = next((root / "phantom").glob("*_desc-truth_dseg.nii.gz"))
    return root, image, labels


def _run(args, kill_after=None):
    process = subprocess.Popen(
        [*CORDMAP, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if kill_after is None:
        return process.wait()
    time.sleep(kill_after)
    os.kill(process.pid, signal.SIGKILL)
    return process.wait()


def _digests(folder: Path, names) -> dict:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in names}


@pytest.mark.parametrize("kill_after", [0.8, 1.6, 2.4])
def test_stages_killed_part_way_re_run_to_the_same_outputs(phantom, kill_after):
    root, image, labels = phantom
    reference = root / "reference"
    if not reference.exists():
        assert _run(["import", image, reference, "--labels", labels]) == 0
        assert _run(["plan", reference]) == 0
        assert _run(["mesh", reference]) == 0
        assert _run(["view", reference, "--static", root / "reference-site"]) == 0
    case = root / f"case-{kill_after}"
    _run(["import", image, case, "--labels", labels], kill_after=kill_after)
    # either nothing, or a whole case: never a folder that blocks the re-run
    assert _run(["import", image, case, "--labels", labels]) == 0
    for stage in (
        ["plan", case],
        ["mesh", case],
        ["view", case, "--static", root / f"site-{kill_after}"],
    ):
        _run(stage, kill_after=kill_after)
        assert _run(stage) == 0
    mesh = sorted(p.name for p in (case / "mesh").iterdir())
    assert mesh == sorted(p.name for p in (reference / "mesh").iterdir())
    assert _digests(case / "mesh", [m for m in mesh if m.endswith(".glb")]) == _digests(
        reference / "mesh", [m for m in mesh if m.endswith(".glb")]
    )
    site = root / f"site-{kill_after}"
    assert sorted(p.relative_to(site) for p in site.rglob("*") if p.is_file()) == sorted(
        p.relative_to(root / "reference-site")
        for p in (root / "reference-site").rglob("*")
        if p.is_file()
    )
    names = ["protocol.json", "sub-01_T2w.nii.gz", "sub-01_T2w_desc-manual_dseg.nii.gz"]
    assert _digests(case, names) == _digests(reference, names)
    plan = (case / "plan" / "plan.json").read_text()
    assert plan.replace(str(case), "") == (reference / "plan" / "plan.json").read_text().replace(
        str(reference), ""
    )
    assert not [p for p in case.rglob(".*part*")] and not list(root.glob(f".{case.name}.*"))
    assert not list(root.glob(f".site-{kill_after}.*"))


def _as_in_a_terminal() -> None:
    """Ctrl-C handled by default in the child, as a shell starts a command (whatever this
    test process inherited)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("delay", [0.5, 0.9, 1.3])
def test_ctrl_c_stops_mesh_at_any_moment(phantom, delay):
    """Importing trimesh swallows KeyboardInterrupt: a Ctrl-C then must still stop the run."""
    root, image, labels = phantom
    case = root / f"mesh-{delay}"
    if not case.exists():
        assert _run(["import", image, case, "--labels", labels]) == 0
    process = subprocess.Popen(
        [*CORDMAP, "mesh", str(case)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_as_in_a_terminal,
    )
    time.sleep(delay)
    if process.poll() is not None:
        pytest.skip(f"the mesh stage ended within {delay} s, before the Ctrl-C")
    process.send_signal(signal.SIGINT)
    assert process.wait() != 0
    assert not (case / "mesh").exists() or "mesh" in (case / "case.json").read_text()


@pytest.mark.parametrize(
    "stage, writer",
    [
        ("plan", "cordmap.pipeline.plan.write_result"),
        ("report", "cordmap.pipeline.report.write_text"),
        ("view", "cordmap.pipeline.view.write_text"),  # the state, once the dataset is in place
    ],
)
def test_a_ctrl_c_just_after_a_stage_writes_its_output_waits_for_the_record(
    phantom, monkeypatch, stage, writer
):
    """The Ctrl-C arrives once the output is written, before case.json records it: the
    record is still made, then the Ctrl-C stops the run, so no output is left unrecorded
    (the invariant the Ctrl-C test of the mesh stage checks)."""
    from cordmap.case import Case, sha256
    from cordmap.pipeline.imports import import_case
    from cordmap.pipeline.plan import run_plan
    from cordmap.pipeline.report import write_case_report
    from cordmap.pipeline.view import build_case_viewer

    root, image, labels = phantom
    case = root / f"held-{stage}"
    import_case(image, case, labels_source=labels)
    if stage != "plan":
        run_plan(case)
    module, name = writer.rsplit(".", 1)
    original = getattr(__import__(module, fromlist=[name]), name)

    def write_then_ctrl_c(*args, **kwargs):
        written = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return written

    monkeypatch.setattr(writer, write_then_ctrl_c)
    run = {"plan": run_plan, "report": write_case_report, "view": build_case_viewer}[stage]
    with pytest.raises(KeyboardInterrupt):
        run(case if stage != "view" else Case.open(case))
    entry = Case.open(case).manifest["stages"][stage]
    assert entry["outputs"]
    for output in entry["outputs"]:
        assert sha256(case / output["path"]) == output["sha256"]
