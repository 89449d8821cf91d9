import os
import stat

import pytest

from cordmap.atomic import atomic_dir, atomic_file


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "a.json") as tmp:
            tmp.write_text("{}")
        with atomic_dir(tmp_path / "site") as tmp:
            (tmp / "index.html").write_text("x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.json") == 0o644  # readable by a web server, not 0600
    assert _mode(tmp_path / "site") == 0o755


def test_failure_leaves_old_target_and_no_temporaries(tmp_path):
    target = tmp_path / "plan.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "viewer") as tmp:
            (tmp / "info").write_text("half")
            raise RuntimeError("crash")
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]
