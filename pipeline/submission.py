"""Starting runs of a compiled package on a KFP API, and the command line of
`python -m deepattraction.pipeline.kubeflow_v2_runner`: `stage` (data to gs://), `submit` (the
training CronJob's entry point) and `--write-golden`."""
from __future__ import annotations

import argparse

import kfp

from deepattraction.pipeline import golden
from deepattraction.pipeline.kfp_package import run_locations
from deepattraction.pipeline.params import parse_hparams
from deepattraction.pipeline.storage import StorageConfig, preflight, stage


def submit(host: str, package: str, params: dict, experiment: str = "deepattraction", run_name: str | None = None,
           pipeline_root: str | None = None, service_account: str | None = None, namespace: str | None = None) -> str:
    """Starts one run of a compiled package on the KFP API at `host`; returns the run id."""
    client = kfp.Client(host=host, namespace=namespace)
    result = client.create_run_from_pipeline_package(
        package, arguments=params, run_name=run_name, experiment_name=experiment, namespace=namespace,
        pipeline_root=pipeline_root, service_account=service_account)
    return result.run_id


def parser():
    """`--write-golden`; `stage` (data to gs://); `submit`: the training CronJob's entry point."""
    p = argparse.ArgumentParser(prog="python -m deepattraction.pipeline.kubeflow_v2_runner")
    p.add_argument("--write-golden", action="store_true")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("submit", help="start a run of a compiled package (deepattraction compile --kfp-package)")
    s.add_argument("--host", required=True, help="KFP API, e.g. http://ml-pipeline.kubeflow:8888")
    s.add_argument("--package", required=True)
    s.add_argument("--experiment", default="deepattraction")
    s.add_argument("--run-name")
    s.add_argument("--pipeline-root", help="overrides the package's default pipeline root")
    s.add_argument("--service-account", help="Kubernetes service account of the run's pods")
    s.add_argument("--namespace")
    s.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a pipeline parameter")
    s.add_argument("--preflight", action="store_true",
                   help="first check that the inputs exist and the pipeline root and serving base are writable")
    s.add_argument("--storage-endpoint", help="a GCS emulator's http://host:port (tests)")
    st = sub.add_parser("stage", help="upload a dataset folder (users.csv, swipes.csv, photos/) to gs://")
    st.add_argument("--data", required=True)
    st.add_argument("--to", required=True, help="e.g. gs://BUCKET/deepattraction/data")
    st.add_argument("--storage-endpoint")
    return p


def main(argv=None) -> int:
    p = parser()
    a = p.parse_args(argv)
    if a.write_golden:
        print(f"golden: wrote {golden.write_golden()}")
    elif a.command == "stage":
        print(f"stage: wrote {len(stage(a.data, a.to, StorageConfig(a.storage_endpoint)))} objects under {a.to}")
    elif a.command == "submit":
        try:
            params = parse_hparams(a.param)
        except ValueError as e:
            p.error(f"--param {e}")
        if a.preflight:
            problems = preflight(run_locations(a.package, params, a.pipeline_root), StorageConfig(a.storage_endpoint))
            if problems:
                raise SystemExit("preflight: " + "; ".join(problems))
        run_id = submit(a.host, a.package, params, a.experiment, a.run_name, a.pipeline_root,
                        a.service_account, a.namespace)
        print(f"submit: run {run_id}")
    else:
        p.error("give --write-golden or submit")
    return 0
