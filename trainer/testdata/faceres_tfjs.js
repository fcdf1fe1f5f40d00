// FaceRes run by TF.js's own runtime (@tensorflow/tfjs, CPU backend), as @vladmandic/human runs it:
// node faceres_tfjs.js MODEL_DIR INPUT.f32 N OUT.json, INPUT.f32 holding N x 224 x 224 x 3 float32
// pixel values 0-255 (what human's `enhance` hands the model). Writes each photo's outputs.
const tf = require("@tensorflow/tfjs");
const fs = require("fs");
const path = require("path");

async function main() {
  const [dir, input, n, out] = process.argv.slice(2);
  await tf.setBackend("cpu");
  const json = JSON.parse(fs.readFileSync(path.join(dir, "faceres.json"), "utf8"));
  const specs = json.weightsManifest.flatMap((g) => g.weights);
  const bins = json.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(dir, p))));
  const data = Buffer.concat(bins);
  const weightData = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  const model = await tf.loadGraphModel(tf.io.fromMemory({modelTopology: json.modelTopology, weightSpecs: specs,
                                                          weightData, format: json.format}));
  const buf = fs.readFileSync(input);
  const x = tf.tensor4d(new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4), [Number(n), 224, 224, 3]);
  const names = ["global_pooling/Mean", "gender_pred/Sigmoid", "age_pred/Softmax"];
  const res = model.execute(x, names);
  const got = {backend: tf.getBackend(), version: tf.version.tfjs};
  for (let i = 0; i < names.length; i++) got[names[i]] = await res[i].array();
  fs.writeFileSync(out, JSON.stringify(got));
}
main();
