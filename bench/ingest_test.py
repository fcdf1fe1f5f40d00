"""The ingest benchmark's own code at a small scale: the same generator, the same Beam run on
both cores, and the same independent pandas check of every photo's labels and the accounting."""
from bench import ingest


def test_small_ingest_labels_and_accounting_match_the_independent_computation(tmp_path):
    cfg = ingest.BenchConfig(workdir=str(tmp_path), users=300, swipes=20_000, pool=10, bad_every=500)
    r = ingest.measure(cfg, workers=2)
    c = r["counts"]
    assert r["labels_equal_pct"] == 100.0 and r["accounting_equal"], c
    assert c["examples"] == 300 and c["users_rejected"] == 5  # the five bad users the generator adds
    assert c["swipes_rejected"] > 0 and c["swipes_before_update"] > 0
    assert ingest.ingest_line(r).startswith("ingest: 20000 swipes, 305 users,")


def test_the_csv_path_gives_the_same_labels(tmp_path):
    cfg = ingest.BenchConfig(workdir=str(tmp_path), users=300, swipes=20_000, pool=10, bad_every=500)
    r = ingest.measure(cfg, workers=1, fmt="csv")
    assert r["labels_equal_pct"] == 100.0 and r["accounting_equal"], r["counts"]
