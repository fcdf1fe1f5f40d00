"""bench.serving picks the model it serves and the backbone it compares with from one recipe."""
import os

import pytest

from bench import serving


def test_the_recipe_names_the_served_backbone_and_its_weights(capsys):
    assert serving.recipe_backbone(serving.BenchConfig()) == ("facenet", serving.WEIGHTS, False)
    backbone, weights, mirrored = serving.recipe_backbone(serving.BenchConfig(recipe="faceres"))
    assert backbone == "faceres" and weights == os.path.join(os.path.dirname(serving.WEIGHTS), "faceres.h5")
    assert mirrored  # the published schedule serves the mean over each crop and its mirror
    assert not serving.recipe_backbone(serving.BenchConfig(recipe="demo"))[2]
    assert serving.model_base(serving.BenchConfig(model_base="/models/x", recipe="faceres")) == "/models/x"
    with pytest.raises(SystemExit):
        serving.main(["--recipe", "resnet"])
    assert "unknown recipe 'resnet'; known: facenet" in capsys.readouterr().err


def test_a_demo_model_pushed_before_the_served_code_changed_is_not_measured(tmp_path):
    from deepattraction.pipeline.configs import module_files

    sources = module_files(serving.SERVED_CODE)
    assert {"deepattraction.trainer.faces", "deepattraction.trainer.preprocessing",
            "deepattraction.trainer.train"} <= set(sources)  # the served graph's code
    newest = max(os.path.getmtime(f) for f in sources.values())
    demo = tmp_path / "deepattraction"
    assert not serving.current_demo_model(str(demo))  # no demo run
    version = demo / "1796293025"
    version.mkdir(parents=True)
    os.utime(version, (newest - 3600, newest - 3600))
    assert not serving.current_demo_model(str(demo))  # pushed by older code
    os.utime(version, (newest + 60, newest + 60))
    assert serving.current_demo_model(str(demo))
