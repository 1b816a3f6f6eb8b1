"""Crash-safe writes (textenv.io): every kill point of a write leaves the old content or the new one.

The kill tests run a child process that SIGKILLs itself at the exact point named (between the two
renames of a folder replace, in the middle of a metrics rewrite), as the reliability audit did.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from textenv.io import (
    MARKER,
    atomic_dir,
    atomic_open,
    atomic_write,
    check_output_dir,
    ensure_replaceable,
    is_complete,
    recover_dir,
    remove_stale,
    require_complete,
)


def _killed(code: str, cwd: Path) -> None:
    """Run ``code`` in a child that kills itself (SIGKILL) where the code calls ``die()``."""
    prelude = "import os, signal\ndef die():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_atomic_write_replaces_and_an_error_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.csv"
    atomic_write(path, "old\n")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("half a new fi")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temp file left
    atomic_write(path, b"new\n")
    assert path.read_text() == "new\n"
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_kill_during_a_file_rewrite_keeps_the_previous_file(tmp_path):
    atomic_write(tmp_path / "config.json", '{"iterations": 8}')
    _killed("""
        from textenv.io import atomic_open
        with atomic_open("config.json") as f:
            f.write('{"iterat')
            f.flush()
            die()
    """, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == {"iterations": 8}


def test_kill_between_the_two_renames_of_a_folder_replace_is_recovered(tmp_path):
    with atomic_dir(tmp_path / "checkpoint") as tmp:
        (tmp / "weights").write_text("v1")
    _killed("""
        import os
        from textenv.io import atomic_dir
        real, calls = os.replace, []
        def replace(src, dst):
            real(src, dst)
            calls.append(dst)
            if len(calls) == 1:  # the old folder is out, the new one not yet in
                die()
        os.replace = replace
        with atomic_dir("checkpoint") as tmp:
            (tmp / "weights").write_text("v2")
    """, tmp_path)
    assert not (tmp_path / "checkpoint").exists()  # the window the audit found
    path = require_complete(tmp_path / "checkpoint")  # a loader puts the complete new copy back
    assert (path / "weights").read_text() == "v2" and is_complete(path)
    remove_stale(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_kill_before_the_marker_leaves_the_old_folder_and_a_temp_folder_that_is_cleaned(tmp_path):
    with atomic_dir(tmp_path / "checkpoint") as tmp:
        (tmp / "weights").write_text("v1")
    _killed("""
        from textenv.io import atomic_dir
        with atomic_dir("checkpoint") as tmp:
            (tmp / "weights").write_text("v2 half")
            die()
    """, tmp_path)
    leftovers = [p for p in tmp_path.iterdir() if p.name != "checkpoint"]
    assert len(leftovers) == 1 and not is_complete(leftovers[0])
    with pytest.raises(ValueError, match="temporary folder of an interrupted write"):
        check_output_dir(leftovers[0])
    assert (recover_dir(tmp_path / "checkpoint") / "weights").read_text() == "v1"
    assert remove_stale(tmp_path / "checkpoint") == leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_a_folder_the_project_did_not_write_is_never_replaced(tmp_path):
    mine = tmp_path / "my_notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="not a textenv output"):
        ensure_replaceable(mine)
    with pytest.raises(FileExistsError, match="not a textenv output"), atomic_dir(mine):
        pytest.fail("the block must not run")
    assert (mine / "thesis.tex").read_text() == "years of work"
    (tmp_path / "empty").mkdir()
    ensure_replaceable(tmp_path / "empty")  # empty and absent folders are fine
    ensure_replaceable(tmp_path / "absent")


def test_an_incomplete_textenv_folder_is_refused_but_a_plain_model_folder_passes(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "policy.json").write_text("{}")
    with pytest.raises(ValueError, match=f"incomplete: no {MARKER}"):
        check_output_dir(ckpt)
    (ckpt / MARKER).write_text("ok\n")
    assert check_output_dir(ckpt) == ckpt
    plain = tmp_path / "hf_model"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    assert check_output_dir(plain) == plain
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_output_dir(tmp_path / "nowhere")


def test_killed_metrics_rewrite_keeps_the_history(tmp_path):
    from agents.tracking import Tracker, read_metrics

    tracker = Tracker(tmp_path, tensorboard=False)
    for step in (1, 2, 3):
        tracker.log(step, {"charts/reward_mean": step / 10})
    _killed("""
        import csv
        from agents.tracking import Tracker
        real = csv.DictWriter.writerows
        def writerows(self, rows):
            self.writer.writerow(["4", "0."])  # half a row reaches the file, then the kill
            die()
        csv.DictWriter.writerows = writerows
        Tracker(".", tensorboard=False).log(4, {"charts/reward_mean": 0.4, "new/key": 1.0})
    """, tmp_path)
    assert [r["iteration"] for r in read_metrics(tmp_path / "metrics.csv")] == [1, 2, 3]


def test_a_resumed_run_has_one_tensorboard_history(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from agents.tracking import Tracker

    first = Tracker(tmp_path)
    for step in (1, 2, 3):  # the run was killed after iteration 3; its checkpoint is at 2
        first.log(step, {"charts/reward_mean": float(step)})
    first.close()
    resumed = Tracker(tmp_path, resume_step=2)
    resumed.log(3, {"charts/reward_mean": 30.0})
    resumed.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    events = acc.Scalars("charts/reward_mean")
    assert [(e.step, e.value) for e in events] == [(1, 1.0), (2, 2.0), (3, 30.0)]
    assert os.path.exists(tmp_path / "metrics.csv")


def test_data_reaches_the_disk_before_the_rename_makes_it_visible(tmp_path, monkeypatch):
    import textenv.io as tio

    log = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(tio.os, "fsync", lambda fd: (log.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(tio.os, "replace", lambda a, b: (log.append("replace"), real_replace(a, b))[1])
    atomic_write(tmp_path / "a.json", "{}")
    assert log.index("fsync") < log.index("replace")
    log.clear()
    with atomic_dir(tmp_path / "ckpt") as tmp:
        (tmp / "w").write_text("x")
    assert log.count("fsync") >= 2 and log.index("fsync") < log.index("replace")  # files, then folders
