"""The batches bench.faces_batches times: one-size SCUT batches, a mixed batch, 640 px photos."""
import io

from PIL import Image

from bench import faces_batches
from conftest import SCUT_DIR


def test_the_mixed_batch_mixes_sizes_and_the_others_do_not():
    sets = faces_batches.batches(SCUT_DIR)
    sizes = {name: {Image.open(io.BytesIO(b)).size for b in photos} for name, (photos, _) in sets.items()}
    assert {name: b for name, (_, b) in sets.items()} == {"scut b64": 64, "scut b8": 8, "scut b1": 1, "mixed b32": 32,
                                                          "640 b8": 8}
    assert sizes["scut b8"] == {(350, 350)} and sizes["640 b8"] == {(640, 480)}
    mixed = sizes["mixed b32"]
    assert len(sets["mixed b32"][0]) == 32 and len(mixed) >= 4 and max(w for w, _ in mixed) > 1000
