"""DataGate's wiring: the policy is checked when the pipeline is built, a KFP run may set it, and
the Trainer cannot start before the gate."""
import pytest
from tfx.orchestration import data_types

from deepattraction.components.data_gate import policy
from deepattraction.pipeline import pipeline
from deepattraction.pipeline.configs import PipelineConfig

CFG = PipelineConfig(pipeline_root="/tmp/r", users_uri="/tmp/u.csv", swipes_uri="/tmp/s.csv", serving_base="/tmp/s")


def _by_id(components) -> dict:
    return {c.id: c for c in components}


def test_the_trainer_runs_after_the_gate_and_the_evaluator_keeps_the_statistics():
    c = _by_id(pipeline.create_components(CFG))
    assert c["DataGate"] in c["Trainer"].upstream_nodes
    assert c["DataGate"].exec_properties["block_on"] == policy.BLOCK_SCHEMA
    assert c["Evaluator"].inputs["statistics"] is c["StatisticsGen"].outputs["statistics"]
    assert c["DataGate"].inputs["baseline_blessing"].producer_component_id == "LatestBlessedModel"


def test_an_unknown_policy_is_refused_when_the_pipeline_is_built():
    with pytest.raises(ValueError, match="unknown data validation policy 'warn'"):
        pipeline.create_components(PipelineConfig(**{**CFG.__dict__, "block_on": "warn"}))


def test_a_runtime_parameter_sets_the_policy_per_run():
    param = data_types.RuntimeParameter(name="block_on", ptype=str, default=policy.BLOCK_NOTHING)
    c = _by_id(pipeline.create_components(CFG, block_on=param))
    assert c["DataGate"].exec_properties["block_on"] is param
