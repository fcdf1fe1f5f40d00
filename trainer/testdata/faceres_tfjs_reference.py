"""Writes faceres_tfjs_scut.json: FaceRes's outputs from TF.js's own runtime on real SCUT faces,
which trainer/faceres_test.py compares the converted Keras model with.

    NODE_PATH=<folder holding @tensorflow/tfjs 4.22 in node_modules> \
        python trainer/testdata/faceres_tfjs_reference.py build/weights/faceres-tfjs

(`npm install @tensorflow/tfjs@4.22.0` in that folder; @vladmandic/human 3.3.6 is built on it.)"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from deepattraction.trainer.faceres_test import REFERENCE_FILE, reference_photos


def main(model_dir: str) -> None:
    names, x = reference_photos()
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "input.f32"), os.path.join(tmp, "out.json")
        x.astype("<f4").tofile(inp)
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faceres_tfjs.js")
        subprocess.run(["node", script, model_dir, inp, str(len(x)), out], check=True)
        with open(out) as f:
            got = json.load(f)
    ref = {"runtime": f"@tensorflow/tfjs {got['version']}, {got['backend']} backend", "photos": names,
           "descriptor": np.round(np.array(got["global_pooling/Mean"]), 7).tolist(),
           "male_probability": np.array(got["gender_pred/Sigmoid"])[:, 0].tolist(),
           "age_softmax": np.round(np.array(got["age_pred/Softmax"]), 9).tolist()}
    with open(REFERENCE_FILE, "w") as f:
        json.dump(ref, f)


if __name__ == "__main__":
    main(sys.argv[1])
