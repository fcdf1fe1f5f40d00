"""TFX's run_fn (a thin adapter) and a plain CLI, both over train() and export()."""
from __future__ import annotations

import argparse
import json
import os
import tempfile

import tensorflow_transform as tft

from deepattraction.trainer import distribute
from deepattraction.trainer.train import TrainConfig, export, train


def run_fn(fn_args) -> None:
    """Hyperparameters come from HParamsGen's HyperParameters artifact (a JSON dict).

    Under MultiWorkerMirroredStrategy every worker trains and saves (saving is collective), but
    only the chief writes to the pipeline's folders."""
    cfg = TrainConfig.from_dict(dict(fn_args.hyperparameters))
    tft_out = tft.TFTransformOutput(fn_args.transform_output)
    machine = distribute.detect()
    scratch = None if machine.is_chief else tempfile.mkdtemp(prefix="worker-")
    model = train(fn_args.train_files, fn_args.eval_files, tft_out, cfg,
                  log_dir=scratch or fn_args.model_run_dir, machine=machine)
    export(model, tft_out, os.path.join(scratch, "model") if scratch else fn_args.serving_model_dir,
           mirrored=bool(cfg.serve_mirrored))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Train and export outside any pipeline.")
    p.add_argument("--train-files", required=True, nargs="+")
    p.add_argument("--eval-files", required=True, nargs="+")
    p.add_argument("--transform-output", required=True, help="a Transform component's transform_graph folder")
    p.add_argument("--serving-dir", required=True)
    p.add_argument("--hparams", default="{}", help="JSON dict of TrainConfig / ModelConfig fields")
    a = p.parse_args(argv)
    tft_out = tft.TFTransformOutput(a.transform_output)
    cfg = TrainConfig.from_dict(json.loads(a.hparams))
    model = train(a.train_files, a.eval_files, tft_out, cfg, log_dir=os.path.join(a.serving_dir, "logs"))
    export(model, tft_out, a.serving_dir, mirrored=bool(cfg.serve_mirrored))


if __name__ == "__main__":
    main()
