from deepattraction.trainer import features


def test_keys_are_unique_and_transformed_names_do_not_collide():
    raw = set(features.raw_feature_spec())
    xf = {features.IMAGE_XF, features.RATIO_XF, features.WEIGHT_XF, features.GENDER_XF, features.FACE_COUNT_XF,
          features.FACE_BOX_XF, features.FACE_CONFIDENCE_XF, features.FACE_LANDMARKS_XF}
    assert len(xf) == 8 and not raw & xf
    assert set(features.LABEL_KEYS) <= raw and set(features.label_feature_spec()) == set(features.LABEL_KEYS)
    assert set(features.SOURCE_COUNT_KEYS) == {"likes_from_female", "swipes_from_female", "likes_from_male",
                                               "swipes_from_male"}
    assert {features.GROUP_KEY, *features.SOURCE_COUNT_KEYS} <= raw


def test_starred_rule_and_backbone_sizes():
    assert features.is_starred(1) and not features.is_starred(0) and not features.is_starred(3)
    assert features.BACKBONES["inception_v3"].image_size == 299 and features.BACKBONES["facenet"].image_size == 160
    assert features.GENDERS.index("male") == 1
