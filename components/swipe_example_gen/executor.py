"""SwipeExampleGen executor: the base ExampleGen executor does splitting and TFRecord writing;
this one supplies the source PTransform and writes the rejects, gender table, counts and times."""
from __future__ import annotations

import json
import os
import time
from typing import Any

import apache_beam as beam
import tensorflow as tf
from absl import logging
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.types import artifact_utils

from deepattraction.components.swipe_example_gen import aggregate

USERS_URI = "users_uri"
SWIPES_URI = "swipes_uri"
PHOTO_BUCKETS = "photo_buckets"  # comma-separated gs:// buckets or prefixes photo_uri may name (PhotoSources)
REPORT_URI = "_report_uri"  # handed from Do to the PTransform; not a component parameter
REJECTS_FILE = "rejects.csv"
GENDER_TABLE_FILE = "gender_table.csv"
SUMMARY_FILE = "summary.json"
_COUNTS_FILE = "counts.json"


def _write_json(path: str, obj: Any) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True))


def _write_gender_table(path: str, cells: list) -> None:
    lines = ["source_gender,target_gender,likes,swipes,like_ratio"]
    for (src, tgt), (likes, n) in sorted(cells):
        lines.append(f"{src},{tgt},{likes},{n},{likes / n:.4f}")
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("\n".join(lines) + "\n")


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _SwipesToExample(pipeline: beam.Pipeline, exec_properties: dict[str, Any],
                     split_pattern: str):  # pylint: disable=invalid-name
    """The source PTransform: tf.Examples out; rejects, gender table and counts as side files."""
    del split_pattern  # one source; the base executor splits by hash of user_id
    report = exec_properties[REPORT_URI]
    agg = aggregate.aggregate(pipeline, exec_properties[USERS_URI], exec_properties[SWIPES_URI],
                              photo_sources=aggregate.PhotoSources.parse(exec_properties.get(PHOTO_BUCKETS)))
    (agg.rejects
     | "RejectLines" >> beam.Map(aggregate.Reject.csv_line)
     | "WriteRejects" >> beam.io.WriteToText(
         os.path.join(report, REJECTS_FILE), shard_name_template="", header=",".join(aggregate.REJECT_COLUMNS)))
    (pipeline | "GenderTableOnce" >> beam.Create([None])
     | "WriteGenderTable" >> beam.Map(
         lambda _, cells: _write_gender_table(os.path.join(report, GENDER_TABLE_FILE), cells),
         cells=beam.pvalue.AsList(agg.gender_table)))
    side = {k: beam.pvalue.AsSingleton(v) for k, v in agg.counts.items()}
    (pipeline | "CountsOnce" >> beam.Create([None])
     | "WriteCounts" >> beam.Map(
         lambda _, times, **c: _write_json(os.path.join(report, _COUNTS_FILE), {**c, "stage_times": times}),
         times=beam.pvalue.AsDict(agg.times), **side))
    return agg.examples


def count_split(examples_uri: str, split: str) -> int:
    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP")) if files else 0


def check_accounting(summary: dict) -> None:
    """Every input row ends in exactly one place; a run whose counts do not add up fails."""
    in_splits = sum(summary["users_in_splits"].values())
    if summary["users_in"] != in_splits + summary["users_rejected"] + summary["users_swipe_only"]:
        raise RuntimeError(f"users do not add up (in = in splits + rejected + swipe only): {summary}")
    if summary["swipes_in"] != summary["swipes_counted"] + summary["swipes_before_update"] + summary["swipes_rejected"]:
        raise RuntimeError(f"swipes do not add up (in = counted + before update + rejected): {summary}")


class Executor(BaseExampleGenExecutor):
    """Swipe tables to split tf.Examples, plus a report that accounts for every input user."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _SwipesToExample

    def Do(self, input_dict, output_dict, exec_properties):
        start = time.time()
        report = artifact_utils.get_single_uri(output_dict["report"])
        super().Do(input_dict, output_dict, {**exec_properties, REPORT_URI: report})
        beam_end = time.time()
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        with tf.io.gfile.GFile(os.path.join(report, _COUNTS_FILE)) as f:
            summary = json.load(f)
        splits = artifact_utils.decode_split_names(examples.split_names)
        summary["users_in_splits"] = {s: count_split(examples.uri, s) for s in splits}
        summary["stages"] = aggregate.stage_times(summary.pop("stage_times"), start)
        end = time.time()
        summary["wall_seconds"] = {"beam_pipeline": round(beam_end - start, 3),
                                   "count_splits": round(end - beam_end, 3), "total": round(end - start, 3)}
        check_accounting(summary)
        _write_json(os.path.join(report, SUMMARY_FILE), summary)
        logging.info("SwipeExampleGen: %s", summary)
        if summary["users_rejected"] or summary["swipes_rejected"]:
            logging.warning("SwipeExampleGen rejected %d users and %d swipes; reasons in %s",
                            summary["users_rejected"], summary["swipes_rejected"], os.path.join(report, REJECTS_FILE))
