"""The demo's photo for the served model comes from the users table's own folder only."""
import csv

import pytest

from deepattraction import demo


def test_demo_photo_is_read_only_from_the_tables_folder(tmp_path):
    data = tmp_path / "data"
    (data / "photos").mkdir(parents=True)
    (tmp_path / "outside.jpg").write_bytes(b"x")
    (data / "photos" / "in.jpg").write_bytes(b"x")
    with open(data / "users.csv", "w", newline="") as f:
        csv.writer(f).writerows([("user_id", "photo_uri"), ("a", str(tmp_path / "outside.jpg")),
                                 ("b", "../outside.jpg"), ("c", "photos/in.jpg")])
    with open(tmp_path / "predictions.csv", "w", newline="") as f:
        csv.writer(f).writerows([("user_id", "pred_face_count"), ("a", "1"), ("b", "1"), ("c", "2")])
    # a and b come first (one face each) but point outside the data folder.
    chosen = demo.demo_photo(str(data / "users.csv"), str(tmp_path / "predictions.csv"))
    assert chosen == str(data / "photos" / "in.jpg")
    with open(tmp_path / "only-outside.csv", "w", newline="") as f:
        csv.writer(f).writerows([("user_id", "pred_face_count"), ("a", "1"), ("b", "1")])
    with pytest.raises(FileNotFoundError, match="no test photo"):
        demo.demo_photo(str(data / "users.csv"), str(tmp_path / "only-outside.csv"))
