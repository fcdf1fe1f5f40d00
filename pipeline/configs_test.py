import os

from deepattraction.pipeline import configs


def test_input_fingerprint_changes_with_new_swipes(tmp_path):
    t = tmp_path / "swipes.csv"
    t.write_text("swiper_id,target_id,liked,swiped_at\n")
    before = configs.input_fingerprint(str(t))
    assert configs.input_fingerprint(str(t)) == before
    with open(t, "a") as f:
        f.write("a,b,1,2026-01-01T00:00:00Z\n")
    assert configs.input_fingerprint(str(t)) != before


def test_code_fingerprint_is_stable_and_push_dir_is_model_base_path():
    assert configs.code_fingerprint() == configs.code_fingerprint()
    cfg = configs.PipelineConfig(pipeline_root="/r", users_uri="u.csv", swipes_uri="s.csv", serving_base="/srv")
    assert cfg.push_dir == os.path.join("/srv", configs.MODEL_NAME)
    assert cfg.trainer_hparams["backbone"] == "inception_v3"
