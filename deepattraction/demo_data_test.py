"""The demo-data generator: the input contract, pre-update swipes, bad rows, SCUT mode and its like rules."""
import csv
import os

import numpy as np
import pytest
from PIL import Image

from conftest import SCUT_DIR
from deepattraction import demo_data
from deepattraction.components.swipe_example_gen.aggregate import SWIPE_COLUMNS, USER_COLUMNS, parse_time
from deepattraction.trainer import features
from deepattraction.trainer.preprocessing import face_inputs


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _pre_update(users, swipes):
    """Valid swipes (both users known) made before the target's photo update."""
    updated = {u["user_id"]: parse_time(u["photo_updated_at"]) for u in users}
    return sum(1 for s in swipes if s["target_id"] in updated and s["swiper_id"] in updated
               and parse_time(s["swiped_at"]) <= updated[s["target_id"]])


def test_synthetic_data_follows_the_contract(tmp_path):
    s = demo_data.make_demo_data(demo_data.DemoDataConfig(out_dir=str(tmp_path), num_users=30, image_size=64, seed=1))
    users_path, swipes_path = demo_data.data_tables(str(tmp_path))
    users, swipes = _rows(users_path), _rows(swipes_path)
    assert tuple(users[0]) == USER_COLUMNS and tuple(swipes[0]) == SWIPE_COLUMNS
    assert len(users) == s.users == 30 + s.bad_users and len(swipes) == s.swipes
    assert _pre_update(users, swipes) == s.pre_update_swipes > 0
    exts = {os.path.splitext(u["photo_uri"])[1] for u in users if u["user_id"].startswith("u")}
    assert exts == {".png", ".jpg"}
    img = Image.open(os.path.join(tmp_path, users[1]["photo_uri"]))
    assert img.size == (64, 64) and img.mode == "RGB"


def test_synthetic_like_ratio_is_learnable_from_the_picture(tmp_path):
    """Appeal shows in the drawing: brighter skin, so pixel brightness tracks the like ratio."""
    demo_data.make_demo_data(demo_data.DemoDataConfig(out_dir=str(tmp_path), num_users=80, image_size=48,
                                                      bad_rows=False))
    users, swipes = (_rows(p) for p in demo_data.data_tables(str(tmp_path)))
    updated = {u["user_id"]: parse_time(u["photo_updated_at"]) for u in users}
    likes, total = {}, {}
    for s in swipes:
        if parse_time(s["swiped_at"]) > updated[s["target_id"]]:
            likes[s["target_id"]] = likes.get(s["target_id"], 0) + int(s["liked"])
            total[s["target_id"]] = total.get(s["target_id"], 0) + 1
    ids = sorted(total)
    ratio = [likes[i] / total[i] for i in ids]
    centre = [np.asarray(Image.open(os.path.join(tmp_path, "photos",
                                                 next(p for p in os.listdir(os.path.join(tmp_path, "photos"))
                                                      if p.startswith(i + "."))))
                         )[20:28, 20:28].mean() for i in ids]
    assert np.corrcoef(ratio, centre)[0, 1] > 0.5


def test_scut_ratings_become_swipes(tmp_path):
    assert os.path.isdir(SCUT_DIR), f"SCUT-FBP5500 faces expected at {SCUT_DIR} (../shared beside the checkout)"
    s = demo_data.make_demo_data(demo_data.DemoDataConfig(out_dir=str(tmp_path), source=SCUT_DIR, num_users=12, seed=2))
    users, swipes = (_rows(p) for p in demo_data.data_tables(str(tmp_path)))
    photos = [u for u in users if u["photo_uri"] and not u["user_id"].startswith("bad")]
    raters = [u for u in users if u["user_id"].startswith("rater")]
    assert len(photos) == 12 and len(raters) == 60 and {r["gender"] for r in raters} == {"female", "male"}
    assert tuple(users[0]) == USER_COLUMNS + (demo_data.GROUP_COLUMN,)  # the synthetic data has no group column
    for u in photos:
        assert u["gender"] == ("female" if u["user_id"][1] == "F" else "male")
        assert u["group"] == u["user_id"][:2] and u["group"] in {"AF", "AM", "CF", "CM"}
    assert all(r["group"] == "" for r in raters)
    counted = [s for s in swipes if s["target_id"] == photos[0]["user_id"]]
    assert 3 <= len(counted) <= 62
    assert _pre_update(users, swipes) == s.pre_update_swipes


def test_synthetic_photos_give_mtcnn_one_two_or_no_faces(tmp_path):
    """About half the synthetic photos show exactly one real face (the starred subset), some two,
    the rest a drawing no detector finds: counted by the Transform's own face detection."""
    import tensorflow as tf

    demo_data.make_demo_data(demo_data.DemoDataConfig(out_dir=str(tmp_path), num_users=40, bad_rows=False, seed=4))
    users = _rows(demo_data.data_tables(str(tmp_path))[0])
    photos = [open(os.path.join(tmp_path, u["photo_uri"]), "rb").read() for u in users]
    counts = np.bincount(face_inputs(tf.constant(photos), 75, features.BACKBONES["inception_v3"],
                                     features.FACE_CANVAS)[features.FACE_COUNT_XF].numpy(),
                         minlength=3)
    assert counts.sum() == 40 and 0.3 <= counts[1] / 40 <= 0.7 and counts[2] > 0 and counts[0] > 0


def test_like_rules_count_ratings_of_four_or_more_or_like_in_proportion_to_the_rating():
    rng = np.random.default_rng(0)
    scores = np.repeat(np.arange(1, 6), [10, 20, 30, 20, 10])  # mean 3.0
    assert demo_data.rating_likes(scores, "threshold", rng).sum() == 30
    graded = [demo_data.rating_likes(scores, "graded", rng).sum() for _ in range(2000)]
    assert np.mean(graded) == pytest.approx(90 * (3.0 - 1) / 4, rel=0.02)  # expected ratio (mean - 1) / 4
    assert np.std(graded) > 1  # each swipe is drawn, not the expectation rounded
    assert not demo_data.rating_likes(np.ones(50), "graded", rng).any() and demo_data.rating_likes(np.full(50, 5),
                                                                                                   "graded", rng).all()
    with pytest.raises(ValueError, match="like_rule must be one of"):
        demo_data.DemoDataConfig(out_dir="x", like_rule="score>=3")


@pytest.mark.parametrize("rule", demo_data.LIKE_RULES)
def test_scut_swipes_follow_the_like_rule(tmp_path, rule):
    """Over 60 photos' counted swipes, the like ratio is what the rule expects of their ratings:
    (mean score - 1) / 4 graded, the share of 4s and 5s by threshold (about half against a quarter)."""
    demo_data.make_demo_data(demo_data.DemoDataConfig(out_dir=str(tmp_path), source=SCUT_DIR, num_users=60,
                                                      bad_rows=False,
                                                      seed=1, like_rule=rule))
    users, swipes = (_rows(p) for p in demo_data.data_tables(str(tmp_path)))
    updated = {u["user_id"]: parse_time(u["photo_updated_at"]) for u in users}
    counted = [s for s in swipes if parse_time(s["swiped_at"]) > updated[s["target_id"]]]
    ratings = {os.path.splitext(r["filename"])[0]: r for r in _rows(os.path.join(SCUT_DIR, "ratings.csv"))}
    n = {k: np.array([int(ratings[s["target_id"]][f"n_score_{k}"]) for s in counted]) for k in range(1, 6)}
    expected = (sum((k - 1) / 4 * n[k] for k in n) if rule == "graded" else n[4] + n[5]) / 60
    observed = np.mean([s["liked"] == "1" for s in counted])
    assert len(counted) > 600 and observed == pytest.approx(expected.mean(), abs=0.03)


@pytest.mark.parametrize("rule", demo_data.LIKE_RULES)
def test_scut_photos_give_each_made_user_its_mean_score_and_the_rule_s_expected_ratio(tmp_path, rule):
    """What the quality benchmark scores against, by the user ids make_scut writes: graded, the
    expected ratio over all ratings is (mean score - 1) / 4; by threshold, the share of 4s and 5s."""
    demo_data.make_demo_data(demo_data.DemoDataConfig(out_dir=str(tmp_path), source=SCUT_DIR, num_users=12,
                                                      bad_rows=False, seed=2, like_rule=rule))
    made = [u["user_id"] for u in _rows(demo_data.data_tables(str(tmp_path))[0]) if u["photo_uri"]]
    ratings = {os.path.splitext(r["filename"])[0]: r for r in _rows(os.path.join(SCUT_DIR, "ratings.csv"))}
    photos = demo_data.scut_photos(SCUT_DIR, rule)
    assert len(made) == 12 and set(photos) == set(ratings)
    for uid in made:
        r = ratings[uid]
        n = np.array([int(r[f"n_score_{k}"]) for k in range(1, 6)])
        assert photos[uid].mean_score == float(r["mean_score"])
        expected = (n @ np.arange(5) / 4 if rule == "graded" else n[3:].sum()) / n.sum()
        assert photos[uid].expected_ratio == pytest.approx(expected)
    if rule == "graded":
        mean, ratio = (np.array([getattr(p, k) for p in photos.values()]) for k in ("mean_score", "expected_ratio"))
        np.testing.assert_allclose(ratio, (mean - 1) / 4, atol=1e-3)
