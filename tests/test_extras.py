"""The core installs without the optional extras: reading, validating, meshing, numbering
and planning work with torch, Lightning, MONAI, SQLAlchemy, Dask and Neuroglancer absent,
and a command that needs an extra says which one to install."""

import subprocess
import sys
import tomllib
from pathlib import Path

from cordmap.errors import EXTRAS

ROOT = Path(__file__).resolve().parents[1]
# The extras' modules cannot be imported, as if never installed.
WITHOUT_EXTRAS = f"""
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in {sorted(EXTRAS)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, NotInstalled())
"""
CLI = """
from cordmap.cli import app
sys.argv[0] = "cordmap"
app()
"""
API = """
import cordmap
phantom = cordmap.make_phantom(seed=0, pixel_mm=2.0)
assert not cordmap.validate(phantom.labels).errors
plan = cordmap.plan(phantom.labels, top=2)
print(len(plan.candidates), round(plan.best.coverage.volume_pct))
print(len(cordmap.mesh_labels(phantom.labels, ids=[2], workers=1)))
try:
    cordmap.segment(phantom.image)
except cordmap.CordmapError as exc:
    print(exc)
"""


def _cordmap(*args, cwd):
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS + CLI, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_core_dependencies_leave_out_the_extras_and_torch_is_pinned_only_in_constraints():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for module in EXTRAS:
        assert module.replace("_", "-") not in core
    extras = project["optional-dependencies"]
    for module, extra in EXTRAS.items():
        if module in ("lightning", "dask"):  # pulled in by pytorch-lightning / distributed
            continue
        assert any(req.lower().replace("-", "_").startswith(module) for req in extras[extra]), (
            module
        )
    assert not any("==" in req for req in extras["learn"])
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()


def test_core_commands_run_without_the_extras_and_the_others_name_their_extra(tmp_path):
    assert _cordmap("phantom", tmp_path / "phantom", "--pixel", "2", cwd=tmp_path).returncode == 0
    image = tmp_path / "phantom/sub-phantom0_T2w.nii.gz"
    labels = tmp_path / "phantom/sub-phantom0_T2w_desc-truth_dseg.nii.gz"
    for args in (
        ["import", image, "case", "--labels", labels],
        ["validate", labels],
        ["mesh", "case"],
        ["plan", "case"],
        ["report", "case"],
    ):
        done = _cordmap(*args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr[-2000:])
    assert (tmp_path / "case/plan/plan.json").is_file()
    assert (tmp_path / "case/report").is_dir()
    for args, extra in ((["segment", "case"], "learn"), (["study", "init", "db.sqlite"], "study")):
        done = _cordmap(*args, cwd=tmp_path)
        assert done.returncode == 1
        assert f"'cordmap[{extra}]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "db.sqlite").exists()
    assert not list((tmp_path / "case").rglob("*desc-unet*"))  # segment wrote nothing


def test_the_core_api_works_without_the_extras_and_segment_names_its_extra():
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS + API], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    count, meshes, error = done.stdout.strip().splitlines()
    assert count.split()[0] == "2" and 50 <= int(count.split()[1]) <= 100
    assert meshes == "1"
    assert "'cordmap[learn]'" in error
