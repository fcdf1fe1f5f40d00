"""The demo-data generator: the input contract, pre-update swipes, bad rows, and SCUT mode."""
import csv
import os

import numpy as np
import pytest
from PIL import Image

from conftest import SCUT_DIR
from deepattraction import demo_data
from deepattraction.components.swipe_example_gen.aggregate import SWIPE_COLUMNS, USER_COLUMNS, parse_time


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
    demo_data.make_demo_data(demo_data.DemoDataConfig(out_dir=str(tmp_path), num_users=80, image_size=48, bad_rows=False))
    users, swipes = (_rows(p) for p in demo_data.data_tables(str(tmp_path)))
    updated = {u["user_id"]: parse_time(u["photo_updated_at"]) for u in users}
    likes, total = {}, {}
    for s in swipes:
        if parse_time(s["swiped_at"]) > updated[s["target_id"]]:
            likes[s["target_id"]] = likes.get(s["target_id"], 0) + int(s["liked"])
            total[s["target_id"]] = total.get(s["target_id"], 0) + 1
    ids = sorted(total)
    ratio = [likes[i] / total[i] for i in ids]
    centre = [np.asarray(Image.open(os.path.join(tmp_path, "photos", next(p for p in os.listdir(os.path.join(tmp_path, "photos")) if p.startswith(i + "."))))
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

    from deepattraction.trainer import features
    from deepattraction.trainer.preprocessing import face_inputs

    demo_data.make_demo_data(demo_data.DemoDataConfig(out_dir=str(tmp_path), num_users=40, bad_rows=False, seed=4))
    users = _rows(demo_data.data_tables(str(tmp_path))[0])
    photos = [open(os.path.join(tmp_path, u["photo_uri"]), "rb").read() for u in users]
    counts = np.bincount(face_inputs(tf.constant(photos), 75, features.BACKBONES["inception_v3"], features.FACE_CANVAS)[features.FACE_COUNT_XF].numpy(),
                         minlength=3)
    assert counts.sum() == 40 and 0.3 <= counts[1] / 40 <= 0.7 and counts[2] > 0 and counts[0] > 0
