import os
import signal
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


def test_a_ctrl_c_between_putting_a_folder_in_place_and_recording_it_waits_for_the_record(
    tmp_path,
):
    """The Ctrl-C arrives once the folder is in place, before the record is written: the
    record is still written whole, and the Ctrl-C stops the run after it."""
    recorded, before = [], signal.getsignal(signal.SIGINT)

    def record():
        os.kill(os.getpid(), signal.SIGINT)
        recorded.append((tmp_path / "out" / "a.txt").read_text())

    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "out", then=record) as tmp:
            (tmp / "a.txt").write_text("done")
    assert recorded == ["done"]
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C handled as before
