"""The in-graph MTCNN against the `mtcnn` package on a small fixed set of real and composite
photos, and on group photos of 640 and 1080 px with faces from 24 px: counts and boxes."""
import os

import pytest
from mtcnn import MTCNN

from bench import face_parity
from conftest import SCUT_DIR
from deepattraction.trainer import faces


@pytest.fixture(scope="module")
def detector():
    return face_parity.GraphDetector()


@pytest.fixture(scope="module")
def photo_set():
    assert os.path.isdir(SCUT_DIR), f"SCUT-FBP5500 faces expected at {SCUT_DIR} (../shared beside the checkout)"
    return face_parity.scut_photos(SCUT_DIR, 6, seed=5) + face_parity.composites(SCUT_DIR, seed=5)


def test_counts_and_boxes_match_the_package(detector, photo_set):
    names, photos = [n for n, _ in photo_set], [b for _, b in photo_set]
    pkg = MTCNN()
    theirs = [pkg.detect_faces(b) for b in photos]
    ours = detector(photos)
    parity = face_parity.compare(names, ours, theirs)
    assert parity.counts_equal == parity.photos, parity.mismatches
    assert parity.boxes_iou_ok == parity.faces_both > 0
    by_name = dict(zip(names, ours))
    assert len(by_name["astronaut.jpg"]) == 1 and len(by_name["coffee_no_face.jpg"]) == 0
    assert len(by_name["two_faces.jpg"]) == 2 and len(by_name["three_faces.jpg"]) == 3


def test_small_faces_in_large_photos_get_the_packages_count(detector):
    """Group photos of 640 and 1080 px with real faces from ~24 px wide: the pyramid starts at
    min_face_size on the photo's own pixels, as the package's does. The old fixed 384 px canvas
    (features.FACE_CANVAS_FAST) shrank a 1080 px photo 2.8x first and lost faces here."""
    photo_set = face_parity.group_photos(SCUT_DIR, 640, 2, seed=1) + face_parity.group_photos(SCUT_DIR, 1080, 2, seed=2)
    names, photos = [n for n, _ in photo_set], [b for _, b in photo_set]
    pkg = MTCNN()
    theirs = [pkg.detect_faces(b) for b in photos]
    widths = [f["box"][2] for faces_ in theirs for f in faces_]
    assert sum(map(len, theirs)) >= 8 and min(widths) < 1080 * faces.DetectorConfig().min_face_size / 384
    parity = face_parity.compare(names, detector(photos), theirs, min_iou=0.95)
    assert parity.counts_equal == parity.photos, parity.mismatches
    assert parity.boxes_iou_ok == parity.faces_both == sum(map(len, theirs))


