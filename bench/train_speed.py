"""Training speed per backbone: the real input pipeline against a bare model step, in one run.

The real pipeline is trainer.train.make_dataset over gzipped tf.Examples of real SCUT photos with
a real Transform graph (tf.Transform's analysis of preprocessing_fn: MTCNN, face crop), exactly
what the Trainer runs. The bare step feeds the same model one batch of cached tensors over and
over. Each backbone runs in its own process, so its peak resident memory is its own.

    python -m bench.train_speed [--photos 96] [--steps 6] [--backbones inception_v3 facenet]

Prints images/s for the first epoch (Transform and face detection run, the cache fills), the
next epoch (from the cache) and the bare step, the ratio pipeline/bare, and the peak memory.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import deepattraction  # noqa: F401  (its __init__ picks Keras 2 before TensorFlow loads)

# TensorFlow, Beam and our modules that load them are imported inside the functions that measure:
# this parent process only starts one child process per measurement (--one), which loads them.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SCUT = os.path.join(ROOT, "..", "shared", "data", "scut-fbp5500-train")


@dataclasses.dataclass(frozen=True)
class SpeedConfig:
    backbone: str = "facenet"
    scut_dir: str = DEFAULT_SCUT
    photos: int = 96
    batch_size: int = 16
    steps: int = 6  # timed steps per measurement, after one warm-up step
    image_size: int = 0  # 0: the backbone's native size
    trainable_blocks: int = -1  # the whole backbone trains: the heaviest step


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_examples(cfg: SpeedConfig, path: str) -> None:
    """Gzipped tf.Examples in the ExampleGen contract (features.raw_feature_spec)."""
    import csv

    import tensorflow as tf

    from deepattraction.trainer import features

    with open(os.path.join(cfg.scut_dir, "ratings.csv"), newline="") as f:
        rows = list(csv.DictReader(f))[: cfg.photos]
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        for r in rows:
            with open(os.path.join(cfg.scut_dir, "images", r["filename"]), "rb") as f:
                photo = f.read()
            likes = int(r["n_score_4"]) + int(r["n_score_5"])
            feat = {features.USER_ID_KEY:
                    tf.train.Feature(bytes_list=tf.train.BytesList(value=[r["filename"].encode()])),
                    features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[photo])),
                    features.GENDER_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
                        value=[features.GENDERS[int(r["group"].endswith("M"))].encode()])),
                    features.LIKE_RATIO_KEY: tf.train.Feature(float_list=tf.train.FloatList(value=[likes / 60])),
                    features.SWIPE_COUNT_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[60]))}
            w.write(tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString())


def transform_graph(cfg: SpeedConfig, examples: str, out_dir: str):
    """tf.Transform's analysis of the project's preprocessing_fn, as the Transform component runs it."""
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    from deepattraction.trainer import features, preprocessing

    spec = features.raw_feature_spec()
    raw = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(examples, compression_type="GZIP")]
    raw = [{k: v.numpy() for k, v in ex.items()} for ex in raw]
    metadata = dataset_metadata.DatasetMetadata(features.raw_schema())  # the schema ImportSchemaGen reads
    fn = functools.partial(preprocessing.preprocessing_fn,
                           custom_config={"backbone": cfg.backbone, "image_size": cfg.image_size})
    with tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp"), force_tf_compat_v1=False):
        transform_fn = (raw, metadata) | tft_beam.AnalyzeDataset(fn)
        _ = transform_fn | tft_beam.WriteTransformFn(out_dir)
    metadata_io.write_metadata(metadata, os.path.join(out_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    return tft.TFTransformOutput(out_dir)


def _timed_fit(model, ds, steps: int) -> float:
    """Images/s over `steps` steps after one warm-up step (tracing) of the same fit."""
    import tensorflow as tf

    times = []

    class Clock(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter())

    model.fit(ds, steps_per_epoch=steps + 1, epochs=1, callbacks=[Clock()], verbose=0)
    return steps / (times[-1] - times[0])


def measure(cfg: SpeedConfig) -> dict:
    import tensorflow as tf

    from deepattraction.trainer import finetune
    from deepattraction.trainer.model import ModelConfig, build_model
    from deepattraction.trainer.train import TrainConfig, compile_model, image_size_of, label_stats, make_dataset

    work = tempfile.mkdtemp(prefix="train-speed-")
    examples = os.path.join(work, "train.gz")
    write_examples(cfg, examples)
    tft_out = transform_graph(cfg, examples, os.path.join(work, "transform"))
    size = image_size_of(tft_out)
    tcfg = TrainConfig(model=ModelConfig(backbone=cfg.backbone, task="both", head_layers=2), batch_size=cfg.batch_size,
                       shuffle_buffer=cfg.photos)
    model = build_model(tcfg.model, size, 0.25, 0.5)
    finetune.set_trainable(model, cfg.backbone, cfg.trainable_blocks, batch_norm=True)
    compile_model(model, tcfg)
    rss_before = _rss_mb()
    steps_per_epoch = cfg.photos // cfg.batch_size
    pipeline = make_dataset([examples], tft_out, tcfg, training=True,
                            mean_swipes=label_stats([examples])["mean_swipes"]).take(steps_per_epoch)
    t0 = time.perf_counter()
    model.fit(pipeline, epochs=1, verbose=0)  # first epoch: Transform + MTCNN run, the cache fills (and tracing)
    first_epoch_s = time.perf_counter() - t0
    cached = _timed_fit(model, pipeline.repeat(), cfg.steps)
    x, y, w = next(iter(pipeline))
    bare = _timed_fit(model, tf.data.Dataset.from_tensors((x, y, w)).repeat(), cfg.steps)
    return {"backbone": cfg.backbone, "image_size": size, "batch_size": cfg.batch_size,
            "first_epoch_images_per_s": cfg.photos / first_epoch_s,
            "pipeline_images_per_s": cached * cfg.batch_size, "bare_step_images_per_s": bare * cfg.batch_size,
            "pipeline_over_bare": cached / bare, "rss_before_training_mb": rss_before,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="+", default=["inception_v3", "facenet"])
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the per-backbone child process
    for f in dataclasses.fields(SpeedConfig):
        if f.name != "backbone":
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    a = p.parse_args(argv)
    own = {f.name: getattr(a, f.name) for f in dataclasses.fields(SpeedConfig) if f.name != "backbone"}
    if a.one:
        print("RESULT " + json.dumps(measure(SpeedConfig(backbone=a.backbones[0], **own))), flush=True)
        return
    results = []
    for b in a.backbones:
        args = [sys.executable, "-m", "bench.train_speed", "--one", "--backbones", b] + \
               [x for k, v in own.items() for x in (f"--{k.replace('_', '-')}", str(v))]
        out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode or not line:
            raise SystemExit(f"{b}: benchmark process failed:\n{out.stderr[-3000:]}")
        results.append(json.loads(line[-1][len("RESULT "):]))
        r = results[-1]
        print(f"{b} @ {r['image_size']} px, batch {r['batch_size']}: first epoch "
              f"{r['first_epoch_images_per_s']:.1f} img/s "
              f"(Transform + MTCNN + tracing), pipeline {r['pipeline_images_per_s']:.2f} img/s, bare step "
              f"{r['bare_step_images_per_s']:.2f} img/s, ratio {r['pipeline_over_bare']:.3f}; peak RSS "
              f"{r['peak_rss_mb']:.0f} MB "
              f"({r['rss_before_training_mb']:.0f} MB before training)", flush=True)
    worst = min(r["pipeline_over_bare"] for r in results)
    print(f"train-speed: input pipeline / bare step >= {worst:.3f} over {', '.join(a.backbones)} "
          f"({'not a bottleneck' if worst >= 0.9 else 'the input pipeline is a bottleneck'} by the 0.9 rule)")


if __name__ == "__main__":
    main()
