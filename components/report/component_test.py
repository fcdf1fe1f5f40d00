import json

from tfx import types
from tfx.types import standard_artifacts

from deepattraction.components.report import component, executor
from deepattraction.components.swipe_example_gen.component import SwipeReport


def test_component_inputs_outputs_and_config():
    c = component.RunReport(examples=types.Channel(type=standard_artifacts.Examples),
                            data_report=types.Channel(type=SwipeReport),
                            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
                            config=component.ReportConfig(gallery_size=5), code_version="abc")
    assert set(c.outputs) == {"report"} and set(c.inputs) == {"examples", "data_report", "evaluation"}
    assert json.loads(c.exec_properties[executor.REPORT_CONFIG])["gallery_size"] == 5
    assert component.HtmlReport.TYPE_NAME == "deepattraction.HtmlReport"
