"""KEY=VALUE parameters as the command lines take them (--hparam, --param): one parser for all."""
from __future__ import annotations

import json


def parse_hparams(pairs: list[str]) -> dict:
    """NAME=VALUE pairs; values are parsed as JSON when they can be (numbers), else kept as strings."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"{pair!r}: expected NAME=VALUE")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out
