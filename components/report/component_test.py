from tfx import types
from tfx.types import standard_artifacts

from deepattraction.components.report import component, executor
from deepattraction.components.swipe_example_gen.component import SwipeReport


def test_the_config_reaches_the_executor_and_the_artifact_type_is_namespaced_for_kfp():
    c = component.RunReport(examples=types.Channel(type=standard_artifacts.Examples),
                            data_report=types.Channel(type=SwipeReport),
                            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
                            config=component.ReportConfig(gallery_size=5, thumb_px=64))
    assert executor.report_config(c.exec_properties) == component.ReportConfig(gallery_size=5, thumb_px=64)
    default = component.RunReport(examples=types.Channel(type=standard_artifacts.Examples),
                                  data_report=types.Channel(type=SwipeReport),
                                  evaluation=types.Channel(type=standard_artifacts.ModelEvaluation))
    assert executor.report_config(default.exec_properties) == component.ReportConfig()
    assert component.HtmlReport.TYPE_NAME == "deepattraction.HtmlReport"
