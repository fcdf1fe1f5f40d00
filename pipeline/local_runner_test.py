import os
import subprocess
import sys

import pytest

from deepattraction.pipeline import configs, local_runner, run_lock
from deepattraction.pipeline.configs import PipelineConfig
from deepattraction.pipeline.results import MLMD_FILE

HOLD = """
import sys, time
from deepattraction.pipeline import run_lock
with run_lock.root_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_run_on_a_busy_root_fails_at_once_naming_the_holder_and_a_killed_holder_frees_it(tmp_path):
    root = tmp_path / "root"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cfg = PipelineConfig(pipeline_root=str(root), users_uri=str(tmp_path / "absent-users.csv"),
                             swipes_uri=str(tmp_path / "absent-swipes.csv"), serving_base=str(tmp_path / "serving"))
        with pytest.raises(run_lock.PipelineRootBusy, match=f"in use by another run \\(pid {holder.pid}\\)"):
            local_runner.run(cfg, show_progress=False)
        assert not (root / MLMD_FILE).exists()  # refused before any step (the inputs do not even exist)
    finally:
        holder.kill()
        holder.wait()
    with run_lock.root_lock(str(root)):  # the OS released the killed holder's lock
        with pytest.raises(run_lock.PipelineRootBusy):
            with run_lock.root_lock(str(root)):
                pass
    with run_lock.root_lock(str(root)):  # and a finished run releases its own
        pass


def test_relative_paths_are_the_working_directorys_so_the_run_is_the_same_as_by_absolute_ones(tmp_path, monkeypatch):
    """The same tables named relatively or absolutely give the same config, so the same cache keys;
    the busy root is named by its absolute path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "u.csv").write_text("user_id\n")
    (tmp_path / "s.csv").write_text("swiper_id\n")
    rel = PipelineConfig(pipeline_root="root", users_uri="u.csv", swipes_uri="s.csv", serving_base="srv")
    absolute = PipelineConfig(pipeline_root=str(tmp_path / "root"), users_uri=str(tmp_path / "u.csv"),
                              swipes_uri=str(tmp_path / "s.csv"), serving_base=str(tmp_path / "srv"),
                              schema_file=os.path.abspath(rel.schema_file))
    assert configs.with_absolute_paths(rel) == absolute
    remote = PipelineConfig(pipeline_root="gs://b/r", users_uri="gs://b/u.csv", swipes_uri="s.csv", serving_base="gs://b/s")
    assert configs.with_absolute_paths(remote).pipeline_root == "gs://b/r"
    assert configs.with_absolute_paths(remote).swipes_uri == str(tmp_path / "s.csv")
    with run_lock.root_lock(str(tmp_path / "root")):
        with pytest.raises(run_lock.PipelineRootBusy, match=f"pipeline root {tmp_path / 'root'} is in use"):
            local_runner.run(rel, show_progress=False)
