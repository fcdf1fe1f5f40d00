"""The in-graph MTCNN: its nets, its outputs and their independence of the batch. Its parity with
the `mtcnn` package on real, composite and group photos is the lab's check: bench/face_parity_test.py."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import SCUT_DIR
from deepattraction import sample_photos
from deepattraction.trainer import faces, features, preprocessing


def test_a_photos_faces_and_crop_do_not_depend_on_the_photos_batched_with_it():
    """The batch canvas is as large as the batch's largest photo: the Transform's Beam batches and
    a serving request group photos differently, and neither may change a photo's answer."""
    scut = [b for _, b in sample_photos.scut_photos(SCUT_DIR, 1, seed=5)]
    small = _encode(Image.fromarray(np.random.default_rng(2).integers(0, 255, (50, 30, 3)).astype(np.uint8)), "PNG")
    big = sample_photos.group_photos(SCUT_DIR, 640, 1, seed=1)[0][1]
    backbone = features.BACKBONES["facenet"]
    alone = [preprocessing.face_inputs(tf.constant([p]), 75, backbone, features.FACE_CANVAS) for p in (small, scut[0])]
    together = preprocessing.face_inputs(tf.constant([small, scut[0], big]), 75, backbone, features.FACE_CANVAS)
    for i, one in enumerate(alone):
        assert one[features.FACE_COUNT_XF].numpy()[0] == together[features.FACE_COUNT_XF].numpy()[i]
        diff = np.abs(one[features.IMAGE_XF].numpy()[0] - together[features.IMAGE_XF].numpy()[i])
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (i, diff.max(), (diff > 0).mean())
        np.testing.assert_allclose(one[features.FACE_BOX_XF].numpy()[0], together[features.FACE_BOX_XF].numpy()[i],
                                   atol=0.05)
    assert together[features.FACE_COUNT_XF].numpy()[1] == 1


def test_a_batch_runs_in_chunks_of_similar_photos_and_answers_in_its_own_order():
    """Photos go into chunks by area, each chunk on a canvas as large as its own largest photo:
    with chunks of 2, a 640 px group photo, a SCUT face and a small PNG given in any order each get
    the faces they get alone, in the order they were given."""
    scut = [b for _, b in sample_photos.scut_photos(SCUT_DIR, 2, seed=5)]
    small = _encode(Image.fromarray(np.random.default_rng(2).integers(0, 255, (50, 30, 3)).astype(np.uint8)), "PNG")
    name, group = sample_photos.group_photos(SCUT_DIR, 640, 1, seed=1)[0]
    pasted = len(name.rsplit("_", 1)[1].split("-"))
    photos = [group, scut[0], small, scut[1], group]
    det = faces.Detector()
    alone = [faces.detect_photos(tf.constant([p]), detector=det)[3] for p in photos]
    chunked = faces.detect_photos(tf.constant(photos), detector=det, chunk=2)[3]
    assert chunked["count"].numpy().tolist() == [a["count"].numpy()[0] for a in alone]
    assert chunked["count"].numpy().tolist() == [pasted, 1, 0, 1, pasted] and pasted > 1
    for i, a in enumerate(alone):
        np.testing.assert_allclose(chunked["boxes"].numpy()[i], a["boxes"].numpy()[0], atol=0.05)
        np.testing.assert_allclose(chunked["confidence"].numpy()[i], a["confidence"].numpy()[0], atol=1e-4)


def test_chunks_hold_photos_of_about_one_size_and_at_most_chunk_of_them():
    hws = tf.constant([[350, 350], [810, 1080], [350, 350], [480, 640], [350, 350], [360, 340]], tf.float32)
    order, ids, n = faces.chunk_ids(hws, 2)
    chunks = {}
    for photo, chunk in zip(order.numpy().tolist(), ids.numpy().tolist()):
        chunks.setdefault(chunk, []).append(photo)
    assert int(n) == len(chunks) == 4 and sorted(map(sorted, chunks.values())) == [[0, 2], [1], [3], [4, 5]]
    assert int(faces.chunk_ids(tf.zeros([0, 2]), 2)[2]) == 1  # no photo: one empty chunk


def test_a_level_keeps_its_most_probable_windows_beyond_max_proposals():
    """The cap bounds the NMS matrices: past it, the most probable windows are kept."""
    photo = tf.constant([sample_photos.scut_photos(SCUT_DIR, 1, seed=5)[0][1]])
    canvases, hws, _ = faces.photo_canvas(photo, features.FACE_CANVAS)
    norm = (canvases - 127.5) / 128.0
    scale = faces.DetectorConfig().scales()[0]
    side = tf.cast(tf.cast(tf.shape(canvases)[1:3], tf.float64) * scale, tf.int32)
    every, capped = (faces.Detector(faces.DetectorConfig(max_proposals=m))._level_proposals(norm, hws, scale, side)
                     for m in (4096, 1))
    assert len(every[2]) > 1 == len(capped[2])
    assert capped[2].numpy().max() == every[2].numpy().max()


def test_package_weights_are_read_from_the_installed_package():
    w = faces.load_package_weights("onet")
    assert [a.shape for a in w][:2] == [(3, 3, 3, 32), (32,)] and len(w) == 21


def test_each_net_gives_an_empty_batch_outputs_of_the_right_shape():
    """No candidate patch left (a batch of faceless photos) is an empty batch: each net must answer
    it with empty outputs of its own shapes, on every CPU kernel library (trainer/faces.py
    nonempty), and a batch that is not empty must pass unchanged."""
    nets = faces.MtcnnNets()
    reg, prob = faces.nonempty(nets.rnet, tf.zeros([0, 24, 24, 3]))
    assert reg.shape == (0, 4) and prob.shape == (0,)
    reg, marks, prob = faces.nonempty(nets.onet, tf.zeros([0, 48, 48, 3]))
    assert reg.shape == (0, 4) and marks.shape == (0, 10) and prob.shape == (0,)
    reg, prob = faces.nonempty(nets.pnet, tf.zeros([0, 40, 40, 3]), tf.zeros([0, 2], tf.int32))
    assert reg.shape == (0, 15, 15, 4) and prob.shape == (0, 15, 15)
    x = tf.random.stateless_uniform([3, 24, 24, 3], [1, 2], -1, 1)
    for a, b in zip(faces.nonempty(nets.rnet, x), nets.rnet(x)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_nonempty_never_hands_a_net_an_empty_batch_and_cuts_any_nest_of_outputs_back():
    """What the backbone in the served graph relies on for a request with no photo, whatever
    the machine's kernels: the net itself is never called on an empty batch."""
    def net(x):
        tf.debugging.assert_positive(tf.shape(x)[0], message="empty batch reached the net")
        return {"ratio": tf.reduce_mean(x, [1, 2]), "male": (x[:, 0, 0, 0], x[:, :2, 0, 0])}

    run = tf.function(lambda x: faces.nonempty(net, x), input_signature=[tf.TensorSpec([None, 4, 4, 3])])
    out = run(tf.zeros([0, 4, 4, 3]))
    assert out["ratio"].shape == (0, 3) and out["male"][0].shape == (0,) and out["male"][1].shape == (0, 2)
    x = tf.random.stateless_uniform([2, 4, 4, 3], [3, 4])
    tf.nest.map_structure(lambda a, b: np.testing.assert_array_equal(a.numpy(), b.numpy()), run(x), net(x))
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch"):
        net(tf.zeros([0, 4, 4, 3]))


def test_the_header_gives_each_formats_size_without_decoding():
    rgb = Image.fromarray(np.zeros((30, 50, 3), np.uint8))
    for fmt in ("JPEG", "PNG", "GIF", "BMP"):
        assert faces.header_hw(tf.constant(_encode(rgb, fmt))).numpy().tolist() == [30, 50], fmt
    assert faces.header_hw(tf.constant(_encode(rgb.convert("L"), "PNG"))).numpy().tolist() == [30, 50]
    bmp = _encode(rgb, "BMP")  # a negative height stores the rows top-down
    top_down = bmp[:22] + (-30).to_bytes(4, "little", signed=True) + bmp[26:]
    assert faces.header_hw(tf.constant(top_down)).numpy().tolist() == [30, 50]
    for junk in (b"", b"hello", b"\x89PNG"):
        assert faces.header_hw(tf.constant(junk)).numpy().tolist() == [0, 0]


def test_a_photo_over_the_pixel_limit_is_refused_before_decoding():
    """A few hundred bytes may declare 40000 x 40000 pixels (4.8 GB decoded): decode refuses it by
    its header with a reason that says so, and photos within the limit pass byte for byte."""
    png = _encode(Image.fromarray(np.zeros((30, 50, 3), np.uint8)), "PNG")
    bomb = png[:16] + (40000).to_bytes(4, "big") + (30000).to_bytes(4, "big") + png[24:]
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        faces.decode(tf.constant(bomb))
    assert faces.refusal(e.value.message) == "photo is 40000x30000 pixels, over the 67,108,864-pixel limit"
    assert faces.refusal("jpeg::Uncompress failed. Invalid JPEG data") is None
    assert faces.within_pixel_limit(tf.constant(png)).numpy() == png
    side = int(features.MAX_PHOTO_PIXELS ** 0.5)  # exactly at the limit: accepted by the header check
    at_limit = png[:16] + side.to_bytes(4, "big") * 2 + png[24:]
    assert faces.within_pixel_limit(tf.constant(at_limit)).numpy() == at_limit


def _gif(frames: int, hw=(40, 60)) -> bytes:
    import io

    images = [Image.fromarray(np.full((*hw, 3), 10 * i, np.uint8)) for i in range(frames)]  # each its own
    buf = io.BytesIO()  # a comment and a loop extension: blocks the frame walk must step over
    images[0].save(buf, "GIF", save_all=frames > 1, append_images=images[1:], loop=0, comment=b"c" * 300)
    return buf.getvalue()


def test_a_gifs_frames_are_counted_without_decoding_up_to_just_past_the_limit():
    size = tf.function(faces.declared_size, input_signature=[tf.TensorSpec([], tf.string)], autograph=False)
    for frames in (1, 3, 17):
        assert size(tf.constant(_gif(frames))).numpy().tolist() == [40, 60, frames]
    # 2048 x 2048 frames: 16 fit the limit, so the walk stops at the 17th of 20.
    assert size(tf.constant(_gif(20, (2048, 2048)))).numpy().tolist() == [2048, 2048, 17]
    for broken in (b"GIF89a", _gif(3)[:200]):
        assert size(tf.constant(broken)).numpy()[2] == 1


def test_an_animation_over_the_pixel_limit_is_refused_before_its_frames_are_decoded():
    """TensorFlow's GIF decoder decodes every frame even when only the first is kept: 20 frames of
    2048 x 2048 would take 20x a frame's memory for one photo."""
    bomb = _gif(20, (2048, 2048))
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        faces.decode(tf.constant(bomb))
    assert faces.refusal(e.value.message) == (
        "photo is 2048x2048 pixels in at least 17 frames, over the 67,108,864-pixel limit")
    assert faces.decode(tf.constant(_gif(3))).shape == (40, 60, 3)


def test_nms_drops_boxes_overlapping_any_better_box_of_the_same_photo():
    boxes = tf.constant([[0, 0, 10, 10], [1, 1, 11, 11], [2, 2, 12, 12], [0, 0, 10, 10.0]])
    ids = tf.constant([0, 0, 0, 1])
    keep = faces.nms(ids, boxes, tf.constant([0.9, 0.8, 0.7, 0.5]), 0.5).numpy()
    # Box 2 overlaps box 1 (itself dropped) enough: the package's rule drops it too.
    assert sorted(keep.tolist()) == [0, 3]


def test_pyramid_starts_at_min_face_size_on_the_photos_own_pixels():
    """The package's scales (12 / min_face_size, then x0.709) whatever the canvas: the canvas
    only bounds how many levels a photo of its size needs."""
    for canvas in (features.FACE_CANVAS_FAST, features.FACE_CANVAS):
        scales = faces.DetectorConfig(canvas=canvas).scales()
        assert scales[0] == pytest.approx(0.6) and all(canvas * s >= 12 for s in scales)
        assert np.allclose(np.diff(np.log(scales)), np.log(0.709))
    assert len(faces.DetectorConfig().scales()) == 12 and len(faces.DetectorConfig(canvas=384).scales()) == 9


def _encode(img, fmt, **kw):
    import io

    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(orientation):
    from PIL import Image, ImageOps

    img = np.zeros((40, 60, 3), np.uint8)
    img[:10, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(Image.fromarray(img), "JPEG", exif=exif.tobytes(), quality=95)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(__import__("io").BytesIO(data))))
    ours = faces.decode(tf.constant(data)).numpy()
    assert faces.exif_orientation(tf.constant(data)).numpy() == orientation
    assert ours.shape == expected.shape and np.abs(ours.astype(int) - expected.astype(int)).max() <= 12


def test_awkward_photos_give_a_face_count_not_a_crash():
    from PIL import Image

    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3)).astype(np.uint8))
    huge = Image.fromarray(np.zeros((3000, 4000, 3), np.uint8))
    photos = [
        _encode(rgb.convert("L"), "JPEG"), _encode(rgb.convert("CMYK"), "JPEG"), _encode(rgb.convert("RGBA"), "PNG"),
        _encode(Image.fromarray(np.random.default_rng(1).integers(0, 65535, (40, 50)).astype(np.uint16)), "PNG"),
        _encode(rgb.resize((8, 6)), "PNG"), _encode(huge, "JPEG"),
        _encode(Image.fromarray(np.zeros((5, 500, 3), np.uint8)), "PNG"),
    ]
    out = preprocessing.face_inputs(tf.constant(photos), 75, features.BACKBONES["inception_v3"], 384)
    assert out[features.FACE_COUNT_XF].numpy().tolist() == [0] * len(photos)
    assert out[features.IMAGE_XF].shape == (len(photos), 75, 75, 3)
    assert np.isfinite(out[features.IMAGE_XF].numpy()).all()


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff\xe0 truncated jpeg", b"GIF89a nonsense"])
def test_corrupt_or_empty_bytes_are_a_clear_error(data):
    with pytest.raises(tf.errors.InvalidArgumentError):
        faces.decode(tf.constant(data))
