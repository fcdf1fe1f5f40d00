"""Training speed and memory: the Trainer's real input pipeline against a bare model step, a head
epoch against a full-backbone epoch, and the Trainer's peak memory as the photo count grows 4x.

The input is what the Trainer reads in the pipeline: real SCUT photos as gzipped tf.Examples,
materialised by TFX's Transform executor (MTCNN, face crop; pipeline/transform_only.py), streamed by
trainer.train.make_dataset. The bare step feeds the same model one batch of tensors over and
over. The head epoch trains the head on frozen outputs computed once (trainer/frozen.py), as
train() does; the full-backbone epoch trains every layer on the streamed crops. The memory run
is train() itself, with the study's schedule (head, then the top blocks), on N and 4N transformed
examples (the photos repeat under new ids). Every measurement runs in its own process, so its
peak resident memory is its own.

    python -m bench.train_speed [--photos 96] [--steps 6] [--memory-photos 256] [--backbones facenet inception_v3]

Ends with one line:
    train-speed: head epoch / full epoch <= <r>, input pipeline / bare step >= <x>,
    trainer peak RSS <a> MiB at <n> photos, <b> MiB at <4n> (<growth>)
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import resource
import tempfile
import time

import deepattraction  # noqa: F401  (its __init__ picks Keras 2 before TensorFlow loads)
from bench import child
from deepattraction.pipeline import transform_only as transform

# TensorFlow, Beam and our modules that load them are imported inside the functions that measure:
# this parent process only starts one child process per measurement (--one), which loads them.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SCUT = os.path.join(ROOT, "..", "shared", "data", "scut-fbp5500-train")
# The study's schedule, short: the head on the frozen backbone, then its top two blocks.
MEMORY_HPARAMS = {"head_epochs": 2, "epochs": 1, "trainable_blocks": 2, "learning_rate": 1e-3,
                  "fine_tune_learning_rate": 1e-4, "head_layers": 2, "head_width": 128, "batch_size": 16}


@dataclasses.dataclass(frozen=True)
class SpeedConfig:
    backbone: str = "facenet"
    scut_dir: str = DEFAULT_SCUT
    photos: int = 96
    batch_size: int = 16
    steps: int = 6  # timed steps per measurement, after one warm-up step
    image_size: int = 0  # 0: the backbone's native size
    memory_photos: int = 256  # the memory run's N (it also runs 4N); 0: no memory run


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def materialised(cfg: SpeedConfig, work: str) -> tuple:
    """The first cfg.photos SCUT photos through the Transform executor: (TFTransformOutput, the
    transformed examples' glob, seconds per photo in Transform)."""
    from deepattraction.trainer import features

    with open(os.path.join(cfg.scut_dir, "ratings.csv"), newline="") as f:
        rows = list(csv.DictReader(f))[: cfg.photos]
    raw = []
    for r in rows:
        with open(os.path.join(cfg.scut_dir, "images", r["filename"]), "rb") as f:
            photo = f.read()
        likes = int(r["n_score_4"]) + int(r["n_score_5"])
        raw.append(transform.raw_example(os.path.splitext(r["filename"])[0], photo, likes / 60, 60,
                                         features.GENDERS[int(r["group"].endswith("M"))]))
    examples = transform.write_examples(os.path.join(work, "examples"), {"train": raw})
    t0 = time.perf_counter()
    tft_out, files = transform.materialise(examples, work, cfg.backbone, cfg.image_size)
    return tft_out, files["train"], (time.perf_counter() - t0) / len(raw)


def repeated(files: str, n: int, path: str) -> str:
    """n transformed examples cycling through those in `files`, each under its own user id."""
    import tensorflow as tf

    from deepattraction.trainer import features

    base = [tf.train.Example.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(tf.io.gfile.glob(files), compression_type="GZIP")]
    with tf.io.TFRecordWriter(path, "GZIP") as w:
        for i in range(n):
            ex = tf.train.Example()
            ex.CopyFrom(base[i % len(base)])
            ex.features.feature[features.USER_ID_XF].bytes_list.value[:] = [f"user{i}".encode()]
            w.write(ex.SerializeToString())
    return path


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
    from deepattraction.trainer.train import (
        FrozenInputs,
        Phase,
        TrainConfig,
        compile_model,
        image_size_of,
        label_stats,
        make_dataset,
        transformed_dataset,
    )

    work = tempfile.mkdtemp(prefix="train-speed-")
    tft_out, files, transform_s = materialised(cfg, work)
    size = image_size_of(tft_out)
    tcfg = TrainConfig(model=ModelConfig(backbone=cfg.backbone, task="both", head_layers=2), batch_size=cfg.batch_size,
                       shuffle_buffer=cfg.photos)
    model = build_model(tcfg.model, size, 0.25, 0.5)
    finetune.set_trainable(model, cfg.backbone, -1, batch_norm=True)  # the whole backbone: the heaviest step
    compile_model(model, tcfg)
    mean_swipes = label_stats(files)["mean_swipes"]
    pipeline = make_dataset(files, tft_out, tcfg, training=True, mean_swipes=mean_swipes).repeat()
    streamed = _timed_fit(model, pipeline, cfg.steps)
    x, y, w = next(iter(pipeline))
    bare = _timed_fit(model, tf.data.Dataset.from_tensors((x, y, w)).repeat(), cfg.steps)
    # The head phase as train() runs it: frozen outputs computed once, then epochs of the head alone.
    xf = transformed_dataset(files, tft_out, tcfg, mean_swipes)
    t0 = time.perf_counter()
    head, head_train, _ = FrozenInputs(xf, xf, tcfg, os.path.join(work, "frozen")).for_phase(
        model, Phase("head", 1, 1e-3, 0))
    frozen_s = time.perf_counter() - t0
    compile_model(head, tcfg)
    head_rate = _timed_fit(head, head_train.repeat(), cfg.steps)
    return {"backbone": cfg.backbone, "image_size": size, "batch_size": cfg.batch_size,
            "transform_s_per_photo": transform_s, "frozen_s_per_photo": frozen_s / cfg.photos,
            "pipeline_images_per_s": streamed * cfg.batch_size, "bare_step_images_per_s": bare * cfg.batch_size,
            "pipeline_over_bare": streamed / bare, "head_images_per_s": head_rate * cfg.batch_size,
            "head_over_full_epoch": streamed / head_rate, "peak_rss_mb": _peak_rss_mb()}


def prepare(cfg: SpeedConfig, work: str, sizes: tuple[int, ...]) -> dict:
    """Materialises cfg.photos photos once and writes, per size n, n training and n/10 eval
    transformed examples for the memory runs."""
    _, files, _ = materialised(cfg, work)
    for n in sizes:
        repeated(files, n, os.path.join(work, f"train-{n}.gz"))
        repeated(files, max(n // 10, cfg.batch_size), os.path.join(work, f"eval-{n}.gz"))
    return {"work": work}


def memory(cfg: SpeedConfig, work: str, photos: int) -> dict:
    """train() with MEMORY_HPARAMS on prepare()'s `photos` transformed examples, in a process
    that does nothing else: its peak RSS is the Trainer's."""
    import tensorflow_transform as tft

    from deepattraction.trainer.train import TrainConfig, train

    rss_before = _peak_rss_mb()
    t0 = time.perf_counter()
    train(os.path.join(work, f"train-{photos}.gz"), os.path.join(work, f"eval-{photos}.gz"),
          tft.TFTransformOutput(os.path.join(work, "transform_graph")),
          TrainConfig.from_dict({**MEMORY_HPARAMS, "backbone": cfg.backbone}),
          work_dir=os.path.join(work, f"trainer-{photos}"))
    return {"photos": photos, "train_s": time.perf_counter() - t0, "rss_before_training_mb": rss_before,
            "peak_rss_mb": _peak_rss_mb()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="+", default=["facenet", "inception_v3"])
    p.add_argument("--one", choices=("speed", "prepare", "memory"), help=argparse.SUPPRESS)  # a child process
    p.add_argument("--memory-run-photos", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--work", default="", help=argparse.SUPPRESS)
    for f in dataclasses.fields(SpeedConfig):
        if f.name != "backbone":
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    a = p.parse_args(argv)
    own = {f.name: getattr(a, f.name) for f in dataclasses.fields(SpeedConfig) if f.name != "backbone"}
    if a.one:
        cfg = SpeedConfig(backbone=a.backbones[0], **own)
        sizes = (a.memory_photos, 4 * a.memory_photos)
        child.report({"speed": lambda: measure(cfg), "prepare": lambda: prepare(cfg, a.work, sizes),
                      "memory": lambda: memory(cfg, a.work, a.memory_run_photos)}[a.one]())
        return
    flags = [x for k, v in own.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    results = []
    for b in a.backbones:
        r = child.run(["bench.train_speed", "--one", "speed", "--backbones", b, *flags], f"{b} speed run")
        results.append(r)
        print(f"{b} @ {r['image_size']} px, batch {r['batch_size']}: "
              f"Transform {r['transform_s_per_photo']:.3f} s/photo (MTCNN, crop, write); "
              f"streamed pipeline {r['pipeline_images_per_s']:.2f} img/s, bare step "
              f"{r['bare_step_images_per_s']:.2f} img/s, ratio {r['pipeline_over_bare']:.3f}; frozen outputs "
              f"{r['frozen_s_per_photo']:.3f} s/photo once, then head {r['head_images_per_s']:.0f} img/s: a head "
              f"epoch costs {r['head_over_full_epoch']:.4f} of a full-backbone epoch; peak RSS "
              f"{r['peak_rss_mb']:.0f} MiB", flush=True)
    mem = []
    if a.memory_photos:
        work = tempfile.mkdtemp(prefix="train-memory-")
        one = ["bench.train_speed", "--backbones", a.backbones[0], "--work", work, *flags]
        child.run([*one, "--one", "prepare"], "materialising the memory runs' examples")
        for n in (a.memory_photos, 4 * a.memory_photos):
            mem.append(child.run([*one, "--one", "memory", "--memory-run-photos", str(n)], f"memory run at {n} photos"))
            m = mem[-1]
            print(f"{a.backbones[0]} train() on {n} photos ({MEMORY_HPARAMS['head_epochs']} head + "
                  f"{MEMORY_HPARAMS['epochs']} top-block epochs): {m['train_s']:.0f} s, "
                  f"peak RSS {m['peak_rss_mb']:.0f} MiB "
                  f"({m['rss_before_training_mb']:.0f} MiB before training)", flush=True)
    worst = min(r["pipeline_over_bare"] for r in results)
    head = max(r["head_over_full_epoch"] for r in results)
    line = f"train-speed: head epoch / full epoch <= {head:.4f}, input pipeline / bare step >= {worst:.3f}"
    if mem:
        growth = mem[1]["peak_rss_mb"] / mem[0]["peak_rss_mb"] - 1
        line += (f", trainer peak RSS {mem[0]['peak_rss_mb']:.0f} MiB at {mem[0]['photos']} photos, "
                 f"{mem[1]['peak_rss_mb']:.0f} MiB at {mem[1]['photos']} ({growth:+.1%})")
    print(line)


if __name__ == "__main__":
    main()
