"""The serving base's push lock: held by one push, waited for by the next, freed by a kill."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from deepattraction.pipeline import run_lock

HOLD = textwrap.dedent("""
    import sys, time
    from deepattraction.pipeline import run_lock
    with run_lock.serving_base_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(600)
""")


def test_a_push_waits_for_the_base_lock_names_its_holder_and_gets_it_once_the_holder_is_killed(tmp_path):
    base = str(tmp_path / "serving" / "deepattraction")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, base], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(run_lock.ServingBaseBusy, match=f"held by another push \\(pid {holder.pid}\\)"):
            with run_lock.serving_base_lock(base, wait_s=0.2):
                pass
        with run_lock.root_lock(str(tmp_path / "root")):  # a pipeline root's lock is another lock
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        with run_lock.serving_base_lock(base, wait_s=60):  # the OS freed the killed holder's lock
            assert open(os.path.join(base, run_lock.PUSH_LOCK_FILE)).read() == str(os.getpid())
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
