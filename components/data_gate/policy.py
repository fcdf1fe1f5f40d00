"""What data validation findings stop the Trainer. Kept apart from validation.py so the command
line can offer the choices without loading TensorFlow Data Validation."""
from __future__ import annotations

BLOCK_SCHEMA = "schema"  # the default: schema anomalies block, drift only warns
BLOCK_SCHEMA_AND_DRIFT = "schema_and_drift"
BLOCK_NOTHING = "nothing"
POLICIES = (BLOCK_SCHEMA, BLOCK_SCHEMA_AND_DRIFT, BLOCK_NOTHING)


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"unknown data validation policy {policy!r}; use one of {', '.join(POLICIES)}")
    return policy
