import json
import os
import shutil

from deepattraction.pipeline import configs, pipeline


def test_input_fingerprint_changes_with_new_swipes(tmp_path):
    t = tmp_path / "swipes.csv"
    t.write_text("swiper_id,target_id,liked,swiped_at\n")
    before = configs.input_fingerprint(str(t))
    assert configs.input_fingerprint(str(t)) == before
    with open(t, "a") as f:
        f.write("a,b,1,2026-01-01T00:00:00Z\n")
    assert configs.input_fingerprint(str(t)) != before


def test_code_fingerprint_follows_an_edit_under_trainer_but_not_a_test(tmp_path):
    roots = []
    for src in configs.CODE_ROOTS:
        roots.append(str(tmp_path / os.path.basename(src)))
        shutil.copytree(src, roots[-1], ignore=shutil.ignore_patterns("__pycache__"))
    trainer = roots[0]
    assert os.path.basename(trainer) == "trainer"
    before = configs.code_fingerprint(tuple(roots))
    assert before == configs.code_fingerprint() and before == configs.code_fingerprint(tuple(roots))
    with open(os.path.join(trainer, "features_test.py"), "a") as f:
        f.write("\n# a test is not code the components run\n")
    assert configs.code_fingerprint(tuple(roots)) == before
    with open(os.path.join(trainer, "features.py"), "a") as f:
        f.write("\nEDITED = 1\n")
    assert configs.code_fingerprint(tuple(roots)) != before


def test_the_code_fingerprint_reaches_each_step_that_runs_our_code_as_code_version():
    """TFX does not hash code named by dotted path, so each such step gets the fingerprint, in one
    form: `code_version`, our components' parameter, TFX's Transform and Trainer's custom_config entry."""
    cfg = configs.PipelineConfig(pipeline_root="/r", users_uri="u.csv", swipes_uri="s.csv", serving_base="/srv")
    steps = {c.id: c.exec_properties for c in pipeline.create_components(cfg, fingerprint="data", code="abc")}
    assert {name: steps[name]["code_version"] for name in ("SwipeExampleGen", "Evaluator", "RunReport")} == \
        dict.fromkeys(("SwipeExampleGen", "Evaluator", "RunReport"), "abc")
    assert [json.loads(steps[name]["custom_config"])["code_version"]
            for name in ("Transform", "Trainer")] == ["abc"] * 2
    assert steps["SwipeExampleGen"]["input_fingerprint"] == "data"  # the data's alone
    compiled = {c.id: c.exec_properties for c in pipeline.create_components(cfg)}  # Kubeflow: the image is the code
    assert all(props.get("code_version") is None and "code_version" not in str(props.get("custom_config"))
               for props in compiled.values())


def test_push_dir_is_model_base_path():
    cfg = configs.PipelineConfig(pipeline_root="/r", users_uri="u.csv", swipes_uri="s.csv", serving_base="/srv")
    assert cfg.push_dir == os.path.join("/srv", configs.MODEL_NAME)
    assert cfg.trainer_hparams["backbone"] == "inception_v3"
