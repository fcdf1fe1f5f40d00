"""Named recipes: one source of what every path trains, the weights they name, and what a run changes."""
import dataclasses
import os

import pytest

from conftest import WEIGHTS_DIR
from deepattraction import recipes
from deepattraction.cli import build_parser, pipeline_config
from deepattraction.components.evaluator.evaluation import GateConfig
from deepattraction.trainer.train import TrainConfig
from deepattraction.weights import output_file


def test_the_product_ships_the_issues_recipes_and_facenet_is_the_default():
    assert {"facenet", "inception", "demo", "tiny"} <= set(recipes.RECIPES)
    assert recipes.DEFAULT_RECIPE == "facenet"
    facenet = recipes.get("facenet")
    assert facenet.backbone == "facenet" and facenet.weights == "facenet" and facenet.pretrained
    # The published schedule: head first, then the top two blocks, mirrored serving.
    cfg = facenet.train_config()
    assert (cfg.head_epochs, cfg.epochs, cfg.trainable_blocks, cfg.serve_mirrored) == (4, 6, 2, 1)
    assert cfg.model.head_layers == 2 and cfg.model.backbone == "facenet"
    assert recipes.get("inception").backbone == "inception_v3" and recipes.get("inception").weights == "inception"
    assert not recipes.get("tiny").pretrained
    for r in recipes.RECIPES.values():
        assert isinstance(r.train_config(), TrainConfig) and isinstance(r.gate, GateConfig) and r.description


def test_an_unknown_recipe_or_hyperparameter_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown recipe 'nope'; known: facenet"):
        recipes.get("nope")
    with pytest.raises(ValueError, match="epoch"):
        recipes.Recipe("bad", "x", backbone="facenet", weights="none", hparams={"epoch": 3})
    with pytest.raises(ValueError, match="recipe fields"):
        recipes.Recipe("bad", "x", backbone="facenet", weights="none", hparams={"weights": "w.h5"})


def test_weights_names_resolve_to_the_fetched_files_and_uris_stay_as_given():
    assert recipes.weights_file("facenet", "/w") == os.path.join("/w", output_file("facenet"))
    assert recipes.weights_file("inception", "/w") == os.path.join("/w", output_file("inception"))
    assert recipes.weights_file("gs://b/w.h5", "/w") == "gs://b/w.h5"
    assert recipes.weights_file("none", "/w") == "none"
    with pytest.raises(ValueError, match="unknown weights 'nope'"):
        recipes.weights_file("nope", "/w")


def test_named_weights_that_are_missing_stop_with_the_path_never_random_weights(tmp_path):
    missing = str(tmp_path / "absent.h5")
    with pytest.raises(FileNotFoundError, match=f"pretrained weights {missing} do not exist"):
        recipes.ensure_weights(missing, str(tmp_path))
    assert recipes.ensure_weights("none", str(tmp_path)) == "none"


def test_differences_name_every_value_a_run_sets_apart_from_its_recipe():
    r = recipes.get("facenet")
    own = r.trainer_hparams(os.path.join("/opt/w", output_file("facenet")))
    assert recipes.differences(r, own, dataclasses.asdict(r.gate), r.image_size) == {}
    assert recipes.describe("facenet", {}) == "recipe facenet, as published"
    changed = {**own, "epochs": 2, "weights": "gs://b/other.h5"}
    gate = {**dataclasses.asdict(r.gate), "max_mse_ratio": 0.5}
    diffs = recipes.differences(r, changed, gate, 120)
    assert diffs == {"epochs": {"recipe": 6, "run": 2}, "weights": {"recipe": "facenet", "run": "gs://b/other.h5"},
                     "gate.max_mse_ratio": {"recipe": r.gate.max_mse_ratio, "run": 0.5},
                     "image_size": {"recipe": 0, "run": 120}}
    line = recipes.describe("facenet", diffs)
    assert line.startswith("recipe facenet, with epochs=2 (recipe: 6)") and "gate.max_mse_ratio=0.5" in line


def test_run_with_only_data_trains_the_default_recipe_from_the_fetched_weights(tmp_path, facenet_weights):
    """`deepattraction run --data DIR` needs no flag: FaceNet, its weights from --weights-dir
    (build/weights, where `make` fetched them), the published schedule and gate."""
    a = _run_args(tmp_path, [])
    cfg = pipeline_config(a)
    r = recipes.get("facenet")
    assert cfg.recipe == "facenet" and cfg.backbone == "facenet"
    assert cfg.hparams == {**r.hparams, "weights": facenet_weights}
    assert cfg.gate == r.gate and cfg.recipe_line() == "recipe facenet, as published"


def test_run_overrides_single_values_of_the_recipe(tmp_path, facenet_weights):
    a = _run_args(tmp_path, ["--recipe", "demo", "--hparam", "head_epochs=3", "--max-mse-ratio", "0.9",
                             "--image-size", "96"])
    cfg = pipeline_config(a)
    assert cfg.recipe == "demo" and cfg.hparams["head_epochs"] == 3 and cfg.image_size == 96
    assert cfg.hparams["head_layers"] == recipes.get("demo").hparams["head_layers"]
    assert cfg.gate.max_mse_ratio == 0.9 and cfg.gate.min_accuracy_gain == recipes.get("demo").gate.min_accuracy_gain
    assert "head_epochs=3 (recipe: 40)" in cfg.recipe_line() and "gate.max_mse_ratio=0.9" in cfg.recipe_line()


def test_run_stops_naming_the_path_when_the_named_weights_are_missing(tmp_path):
    a = _run_args(tmp_path, ["--hparam", f"weights={tmp_path / 'nowhere.h5'}"])
    with pytest.raises(SystemExit, match=f"run: pretrained weights {tmp_path / 'nowhere.h5'} do not exist"):
        pipeline_config(a)
    with pytest.raises(SystemExit, match="backbone is the recipe's"):
        pipeline_config(_run_args(tmp_path, ["--hparam", "backbone=inception_v3"]))


def _run_args(tmp_path, extra: list[str]):
    return build_parser().parse_args(["run", "--users", str(tmp_path / "u.csv"), "--swipes", str(tmp_path / "s.csv"),
                                      "--pipeline-root", str(tmp_path / "root"), "--weights-dir", WEIGHTS_DIR, *extra])


def test_every_recipe_gates_on_the_group_gap_with_the_products_tolerance():
    """A retrain's noise (+0.02 on SCUT) passes; a group whose error grows past a twentieth of the
    split's does not (components/evaluator/fairness_test.py holds the rule itself)."""
    assert 0 < recipes.GROUP_GAP_TOLERANCE < 0.1
    for r in recipes.RECIPES.values():
        assert r.gate.max_group_gap_regression == recipes.GROUP_GAP_TOLERANCE, r.name


def test_every_fetchable_backbone_names_its_licence_for_the_model_card():
    from deepattraction import weights

    for name in ("facenet", "inception", "faceres"):
        assert weights.licence(name).startswith(f"{name}: ")
    out = weights.output_file("faceres")
    assert weights.licence(f"gs://bucket/weights/{out}") == weights.licence("faceres")
    assert "Apache-2.0" in weights.licence(f"/opt/deepattraction/weights/{out}")
    assert weights.licence("none") is None and weights.licence("/tmp/my_weights.h5") is None
