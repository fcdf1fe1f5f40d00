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
