"""The statistics benchmark at a tiny scale: the same code as `make bench-statistics`."""
import re

from bench import statistics

LINE = re.compile(r"statistics: 400 photos, [\d.]+ s, peak RSS \d+ MiB \(at 200 photos: [\d.]+ s, \d+ MiB\), "
                  r"RSS growth -?\d+% for 2x photos$")


def test_bench_runs_statistics_gen_in_fresh_processes_and_prints_its_line(tmp_path, capsys):
    statistics.main(["--photos", "200,400", "--photo-kb", "2", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out.strip().splitlines()
    assert LINE.match(out[-1]), out[-1]
    rows = [ln.split() for ln in out[1:-1]]
    assert [r[0] for r in rows] == ["200", "400"] and all(float(r[-1]) > 100 for r in rows)  # a real process's RSS
