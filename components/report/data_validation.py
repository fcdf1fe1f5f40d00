"""The report's data validation section: ExampleValidator's schema anomalies per split, and the
training data's drift against the last blessed run, with the policy that decided what blocks."""
from __future__ import annotations

import html

from deepattraction.components.data_gate import policy


def _esc(v) -> str:
    return html.escape(str(v), quote=True)


def _rows(rows: list[dict]) -> str:
    return "".join(f"<li><b>{_esc(r['feature'])}</b>: {_esc('; '.join(r['reasons']))}</li>" for r in rows)


def section(verdict: dict | None) -> str:
    """HTML; says plainly when the run had no validation or no baseline to compare with."""
    if verdict is None:
        return '<p class="note">No data validation ran for this run.</p>'
    rule = verdict.get("policy", policy.BLOCK_SCHEMA)
    found = {split: rows for split, rows in sorted((verdict.get("schema_anomalies") or {}).items()) if rows}
    checked = ", ".join(sorted(verdict.get("schema_anomalies") or {})) or "no split"
    schema = ("".join(f"<p>Schema anomalies in <b>{_esc(s)}</b>:</p><ul class=\"anomalies\">{_rows(r)}</ul>"
                      for s, r in found.items()) if found else
              f'<p class="ok">No schema anomalies ({_esc(checked)} checked by ExampleValidator).</p>')
    drifted = verdict.get("drift")
    if drifted is None:
        drift = '<p class="note">No drift measured: there is no blessed run with statistics to compare with yet.</p>'
    else:
        cells = "".join(f"<tr><td>{_esc(m['feature'])}</td><td>{_esc(m['measure'])}</td><td>{m['value']:.4f}</td>"
                        f"<td>{m['threshold']:g}</td><td>{'DRIFT' if m['value'] > m['threshold'] else 'ok'}</td></tr>"
                        for m in drifted.get("measurements", []))
        drift = (f"<p>Drift of the training split against the last blessed run:</p>"
                 f'<table class="drift"><tr><th>feature</th><th>measure</th><th>value</th><th>threshold</th>'
                 f"<th></th></tr>{cells}</table>"
                 + (f'<ul class="anomalies">{_rows(drifted["anomalies"])}</ul>' if drifted.get("anomalies") else ""))
    blocks = {policy.BLOCK_SCHEMA: "schema anomalies block the Trainer; drift only warns",
              policy.BLOCK_SCHEMA_AND_DRIFT: "schema anomalies and drift block the Trainer",
              policy.BLOCK_NOTHING: "nothing blocks the Trainer; anomalies only warn"}.get(rule, rule)
    return f'<p class="note">Policy <code>{_esc(rule)}</code>: {_esc(blocks)}.</p>{schema}{drift}'
