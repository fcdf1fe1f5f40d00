import importlib
import json
import os

from deepattraction.pipeline import configs, pipeline


def test_input_fingerprint_changes_with_new_swipes(tmp_path):
    t = tmp_path / "swipes.csv"
    t.write_text("swiper_id,target_id,liked,swiped_at\n")
    before = configs.input_fingerprint(str(t))
    assert configs.input_fingerprint(str(t)) == before
    with open(t, "a") as f:
        f.write("a,b,1,2026-01-01T00:00:00Z\n")
    assert configs.input_fingerprint(str(t)) != before


def test_a_steps_code_version_follows_the_modules_it_imports_and_nothing_else(tmp_path, monkeypatch):
    pkg = tmp_path / "pkgx"
    pkg.mkdir()
    files = {
        "__init__.py": "",
        "a.py": "import os\nfrom pkgx.c import NAME\n\n\ndef f():\n    from pkgx import b\n    return b\n",
        "b.py": "X = 1\n",
        "c.py": "NAME = 'c'\n",
        "d.py": "UNUSED = 1\n",
        "a_test.py": "from pkgx import a\n",
        "style.css": "body {}\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    got = configs.module_files(("pkgx.a",), "pkgx")
    assert sorted(got) == ["pkgx", "pkgx.a", "pkgx.b", "pkgx.c"]  # b only inside a function; c by `from c import`
    before = configs.code_version(("pkgx.a",), "pkgx")
    for name in ("d.py", "a_test.py"):  # neither is executed by the step
        (pkg / name).write_text(files[name] + "# edited\n")
        assert configs.code_version(("pkgx.a",), "pkgx") == before, name
    for name in ("b.py", "c.py", "style.css"):
        (pkg / name).write_text(files[name] + "\n# edited\n")
        after = configs.code_version(("pkgx.a",), "pkgx")
        assert after != before, name
        before = after


def test_the_trainers_code_is_not_the_transforms_so_a_training_edit_keeps_the_face_crops_cached():
    closures = {step: set(configs.module_files(mods)) for step, mods in configs.STEP_MODULES.items()}
    t = "deepattraction.trainer."
    assert {t + "preprocessing", t + "faces", t + "features"} <= closures["Transform"]
    assert not {t + "train", t + "task", t + "frozen", t + "model"} & closures["Transform"]
    assert {t + "task", t + "train", t + "frozen", t + "model", t + "features"} <= closures["Trainer"]
    assert t + "features" in closures["SwipeExampleGen"]  # the feature keys reach every step
    versions = configs.step_code_versions()
    assert set(versions) == set(configs.STEP_MODULES) and len(set(versions.values())) == len(versions)
    assert versions == configs.step_code_versions()


def test_the_code_fingerprint_reaches_each_step_that_runs_our_code_as_code_version():
    """TFX does not hash code named by dotted path, so each such step gets the fingerprint, in one
    form: `code_version`, our components' parameter, TFX's Transform and Trainer's custom_config entry."""
    cfg = configs.PipelineConfig(pipeline_root="/r", users_uri="u.csv", swipes_uri="s.csv", serving_base="/srv")
    steps = {c.id: c.exec_properties for c in pipeline.create_components(cfg, fingerprint="data", code="abc")}
    per_step = {c.id: c.exec_properties
                for c in pipeline.create_components(cfg, code={"Transform": "t", "Trainer": "m"})}
    assert json.loads(per_step["Transform"]["custom_config"])["code_version"] == "t"
    assert json.loads(per_step["Trainer"]["custom_config"])["code_version"] == "m"
    assert per_step["Evaluator"].get("code_version") is None  # a step without a version gets none
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
