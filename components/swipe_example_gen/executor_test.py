"""The executor on a generated dataset: splits by user, rejects with reasons, counts that add up."""
import csv
import json
import os

import pytest
import tensorflow as tf

from deepattraction.components.swipe_example_gen import executor
from deepattraction.demo_data import data_tables
from deepattraction.trainer import features


def _user_ids(uri, split):
    files = tf.io.gfile.glob(os.path.join(uri, f"Split-{split}", "*"))
    ids = []
    for rec in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        ex = tf.train.Example.FromString(rec.numpy())
        ids.append(ex.features.feature[features.USER_ID_KEY].bytes_list.value[0].decode())
    return ids


def test_every_user_ends_in_one_split_or_in_the_rejects(tiny_data, tiny_examples):
    data, made = tiny_data
    examples, report = tiny_examples
    with open(os.path.join(report.uri, executor.SUMMARY_FILE)) as f:
        summary = json.load(f)
    splits = {s: _user_ids(examples.uri, s) for s in ("train", "eval", "test")}
    all_ids = [u for ids in splits.values() for u in ids]
    assert len(all_ids) == len(set(all_ids)), "a user landed in two splits"
    with open(os.path.join(report.uri, executor.REJECTS_FILE), newline="") as f:
        rejects = list(csv.DictReader(f))
    rejected_users = {r["id"] for r in rejects if r["kind"] == "user"}
    with open(data_tables(data)[0], newline="") as f:
        input_users = {r["user_id"] for r in csv.DictReader(f)}
    assert set(all_ids) | rejected_users == input_users and not set(all_ids) & rejected_users
    assert summary["users_in"] == made.users == len(all_ids) + summary["users_rejected"]
    assert summary["users_in_splits"] == {s: len(ids) for s, ids in splits.items()}
    assert all(len(ids) > 0 for ids in splits.values())
    assert summary["swipes_before_update"] == made.pre_update_swipes
    # The bad swipe rows, and the post-update swipes to the two targets whose photo is refused.
    refused = {r["id"]: int(r["reason"].split(" ")[0]) for r in rejects if r["kind"] == "swipes"}
    assert refused == {"bad-missing-photo": 3, "bad-corrupt-photo": 3}
    assert summary["swipes_rejected"] == made.bad_swipes + sum(refused.values())
    assert summary["swipes_in"] == made.swipes == (
        summary["swipes_counted"] + summary["swipes_before_update"] + summary["swipes_rejected"])
    reasons = {r["id"]: r["reason"] for r in rejects if r["kind"] != "swipes"}
    assert "photo not readable" in reasons["bad-missing-photo"]
    # libjpeg's own words (here from reading the header for the pixel limit), not the traced
    # function's node names.
    assert ": undecodable image (Invalid JPEG data" in reasons["bad-corrupt-photo"], reasons
    assert "no swipes after the photo update" in reasons["bad-no-swipes"]
    assert any(r["reason"] == "unknown target_id" for r in rejects)


def test_summary_gives_each_stages_time_in_pipeline_order(tiny_examples):
    """Each stage's CPU seconds and when it ran; a stage that needs all of another's output (a
    shuffle, a side input) starts after it ends, and every stage ends within the Beam pipeline."""
    from deepattraction.components.swipe_example_gen import aggregate

    _, report = tiny_examples
    with open(os.path.join(report.uri, executor.SUMMARY_FILE)) as f:
        summary = json.load(f)
    stages, wall = summary["stages"], summary["wall_seconds"]
    assert set(stages) == set(aggregate.STAGES) and "cpu_seconds" not in summary
    assert all(s["cpu_seconds"] > 0 and 0 <= s["start_s"] <= s["end_s"] for s in stages.values()), stages
    for before, after in [("index_users", "check_swipes"), ("check_swipes", "count_swipes"),
                          ("count_swipes", "candidates"), ("candidates", "photos")]:
        assert stages[before]["end_s"] <= stages[after]["start_s"], (before, after, stages)
    assert stages["photos"]["start_s"] <= stages["write_examples"]["start_s"]
    assert max(s["end_s"] for s in stages.values()) <= wall["beam_pipeline"] <= wall["total"]
    assert wall["total"] == pytest.approx(wall["beam_pipeline"] + wall["count_splits"], abs=0.01)


def test_gender_table_has_four_cells(tiny_examples):
    _, report = tiny_examples
    with open(os.path.join(report.uri, executor.GENDER_TABLE_FILE), newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["source_gender"], r["target_gender"]) for r in rows} == {(a, b) for a in features.GENDERS
                                                                        for b in features.GENDERS}
    for r in rows:
        assert float(r["like_ratio"]) == round(int(r["likes"]) / int(r["swipes"]), 4)


def test_per_source_gender_counts_add_up_to_the_label(tiny_examples):
    examples, _ = tiny_examples
    files = tf.io.gfile.glob(os.path.join(examples.uri, "Split-*", "*"))
    both = 0
    for rec in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        f = tf.train.Example.FromString(rec.numpy()).features.feature
        likes = [f[features.likes_from_key(g)].int64_list.value[0] for g in features.GENDERS]
        swipes = [f[features.swipes_from_key(g)].int64_list.value[0] for g in features.GENDERS]
        n = f[features.SWIPE_COUNT_KEY].int64_list.value[0]
        assert sum(swipes) == n and sum(likes) == round(f[features.LIKE_RATIO_KEY].float_list.value[0] * n)
        assert f[features.GROUP_KEY].bytes_list.value == [b""]  # the synthetic users table has no group column
        both += min(swipes) > 0
    assert both > 0


def test_counts_that_do_not_add_up_fail_the_run():
    ok = {"users_in": 5, "users_in_splits": {"train": 3}, "users_rejected": 1, "users_swipe_only": 1,
          "swipes_in": 10, "swipes_counted": 6, "swipes_before_update": 3, "swipes_rejected": 1}
    executor.check_accounting(ok)
    for key in ("swipes_counted", "users_swipe_only"):
        with pytest.raises(RuntimeError, match="do not add up"):
            executor.check_accounting({**ok, key: ok[key] - 1})
