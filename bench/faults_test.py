"""bench/faults.py's summary: the line the issue asks for, and which figures make the run fail."""
import dataclasses
import re

from bench.faults import FaultsResult, summary_line

LINE = re.compile(r"^faults: (\d+) kills, (\d+) partial versions loaded; broken push (\d+)/(\d+) failed; "
                  r"storm peak RSS (\d+\.\d\d)x idle; drain (\d+) dropped$")


def _passing() -> FaultsResult:
    return FaultsResult(kills=20, kills_mid_push=14, broken_requests=400, concurrent_versions=(7, 8),
                        concurrent_ok=True, storm_requests=256, idle_rss=400 << 20, peak_rss=480 << 20,
                        storm_good_after=True, drain_in_flight=5, drain_exit_ok=True)


def test_the_summary_line_has_the_issues_format_with_zeros_where_asked():
    r = _passing()
    line = summary_line(r)
    assert LINE.match(line), line
    assert line == ("faults: 20 kills, 0 partial versions loaded; broken push 0/400 failed; "
                    "storm peak RSS 1.20x idle; drain 0 dropped")
    assert r.ok()


def test_any_fault_figure_fails_the_run_and_shows_in_the_line():
    bad = {"partial_loaded": 1, "incomplete_versions": 1, "broken_failed": 3, "broken_wrong_version": 1,
           "concurrent_ok": False, "storm_wrong_code": 2, "peak_rss": 601 << 20, "storm_good_after": False,
           "drain_dropped": 1, "drain_exit_ok": False, "kills": 19, "drain_in_flight": 0}
    for field, value in bad.items():
        r = dataclasses.replace(_passing(), **{field: value})
        assert not r.ok(), field
    r = dataclasses.replace(_passing(), incomplete_versions=2, broken_failed=3, drain_dropped=1, peak_rss=800 << 20)
    assert summary_line(r) == ("faults: 20 kills, 2 partial versions loaded; broken push 3/400 failed; "
                               "storm peak RSS 2.00x idle; drain 1 dropped")
