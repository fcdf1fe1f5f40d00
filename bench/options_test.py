"""The options benchmark's probe: its weighted kernel ridge is the weighted least-squares fit it
claims to be, its block kernels weigh blocks equally, and it scores an option on the test photos
with the strength the eval photos chose."""
import numpy as np
import pytest

from bench import options, quality
from deepattraction.components.evaluator import evaluation


def test_ridge_is_weighted_least_squares_with_the_weighted_mean_removed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5))
    y = x @ rng.normal(size=5) + 3.0
    w = rng.uniform(1, 60, size=80)
    train = np.arange(80) < 60
    preds = options.ridge(x @ x.T, y, w, train, (1e-9, 1e3))
    assert np.allclose(preds[1e-9], y, atol=1e-4)  # an exact linear target, test photos included
    # A strong ridge shrinks towards the weighted mean of the training labels.
    assert abs(preds[1e3][~train] - np.average(y[train], weights=w[train])).max() < \
        0.2 * abs(y[~train] - np.average(y[train], weights=w[train])).max()


def test_ridge_follows_the_weights():
    """Two photos with the same features and different labels: the fit sits nearer the one
    with more swipes, as the study's weighted MSE asks."""
    x = np.array([[1.0], [1.0], [-1.0]])
    y = np.array([0.2, 0.8, 0.5])
    heavy_second = options.ridge(x @ x.T, y, np.array([1.0, 9.0, 1.0]), np.ones(3, bool), (1e-9,))[1e-9]
    heavy_first = options.ridge(x @ x.T, y, np.array([9.0, 1.0, 1.0]), np.ones(3, bool), (1e-9,))[1e-9]
    assert heavy_second[0] > 0.6 > 0.4 > heavy_first[0]


def test_block_kernels_weigh_blocks_equally_whatever_their_width_and_scale():
    rng = np.random.default_rng(1)
    train = np.arange(50) < 40
    narrow, wide = rng.normal(size=(50, 4)), 100 * rng.normal(size=(50, 400))
    for k in (options.block_kernel(narrow, train), options.block_kernel(wide, train)):
        assert abs(np.mean(np.diag(k)[train]) - 1) < 0.05


def test_options_cover_the_issues_choices():
    names = [o.name for o in options.options({"facenet": ["Block35_5_ScaleSum", "Mixed_6a", "Block17_10_ScaleSum",
                                                          "Mixed_7a", "Block8_6_ScaleSum"],
                                              "inception_v3": [f"mixed{i}" for i in range(11)]})]
    assert "facenet: pool" in names and "facenet: pool, mirrored" in names
    assert "facenet: every block + pool, mirrored" in names
    assert "both: every block + pool, mirrored" in names
    assert options.facenet_stage_ends(["Block35_1_ScaleSum", "Block35_5_ScaleSum", "Mixed_6a",
                                       "Block17_1_ScaleSum", "Block17_10_ScaleSum"]) == [
        "Block35_5_ScaleSum", "Mixed_6a", "Block17_10_ScaleSum"]


def test_a_probe_on_informative_features_beats_one_on_noise():
    rng = np.random.default_rng(2)
    ids = [f"{g}{i}" for g in ("AF", "AM") for i in range(1, 301)]
    n = len(ids)
    score = rng.normal(size=n)
    like_ratio = 1 / (1 + np.exp(-score))
    male = (rng.uniform(size=n) < 0.5).astype(np.int64)
    labels = evaluation.Labels(like_ratio=like_ratio + rng.normal(0, 0.02, n), swipe_count=rng.integers(3, 60, n),
                               male=male)
    signal = np.stack([score, 2 * male - 1.0], 1) @ rng.normal(size=(2, 16)) + rng.normal(0, 0.1, (n, 16))
    noise = rng.normal(size=(n, 16))
    masks = quality.split(ids, 0)
    kernels = {("b", "good", "own"): options.block_kernel(signal, masks[0]),
               ("b", "bad", "own"): options.block_kernel(noise, masks[0])}
    good = options.probe_fold(kernels, options.Option("good", {"b": ["good"]}, False), labels, score, masks, 0)
    bad = options.probe_fold(kernels, options.Option("bad", {"b": ["bad"]}, False), labels, score, masks, 0)
    assert good["photos"] == masks[2].sum()
    assert good["pearson"] > 0.9 and abs(bad["pearson"]) < 0.3
    assert good["gender_accuracy"] > 0.95 and good["mse_over_constant"] < 0.2 < bad["mse_over_constant"]


def _noisy_setup(seed=3):
    rng = np.random.default_rng(seed)
    ids = [f"{g}{i}" for g in ("AF", "AM") for i in range(1, 401)]
    n = len(ids)
    score = rng.normal(size=n)
    expected = 1 / (1 + np.exp(-score))
    swipes = rng.integers(3, 8, n)
    observed = rng.binomial(swipes, expected) / swipes  # a few swipes each: very noisy
    male = (rng.uniform(size=n) < 0.5).astype(np.int64)
    labels = evaluation.Labels(like_ratio=observed, swipe_count=swipes, male=male)
    x = score[:, None] @ rng.normal(size=(1, 32)) + rng.normal(0, 0.3, (n, 32))
    masks = quality.split(ids, 0)
    return {("b", "pool", "mirrored"): options.block_kernel(x, masks[0])}, labels, score, expected, masks


def test_the_noise_free_diagnostic_fits_the_expected_ratio_and_scores_against_the_observed_labels():
    kernels, labels, score, expected, masks = _noisy_setup()
    observed = options.probe_fold(kernels, options.Option("obs", {"b": ["pool"]}, True), labels, score, masks, 0)
    clean = options.probe_fold(kernels, options.Option("clean", {"b": ["pool"]}, True, target="expected"),
                               labels, score, masks, 0, expected)
    assert clean["pearson"] > observed["pearson"] + 0.01
    assert clean["photos"] == observed["photos"] == masks[2].sum()
    assert clean["train_photos"] == observed["train_photos"] == masks[0].sum()
    with pytest.raises(ValueError, match="needs expected_ratio"):
        options.probe_fold(kernels, options.Option("clean", {"b": ["pool"]}, True, target="expected"),
                           labels, score, masks, 0)
    with pytest.raises(ValueError, match="target"):
        options.Option("x", {}, True, target="mean")


def test_a_learning_curve_point_fits_on_a_fixed_share_of_the_training_photos_only():
    kernels, labels, score, _, masks = _noisy_setup()
    half = options.subsample(masks[0], 0.5, 2)
    assert half.sum() == round(masks[0].sum() / 2) and not (half & ~masks[0]).any()
    assert (options.subsample(masks[0], 0.5, 2) == half).all()
    assert not (options.subsample(masks[0], 0.5, 3) == half).all()
    row = options.probe_fold(kernels, options.Option("half", {"b": ["pool"]}, True, train_fraction=0.5),
                             labels, score, masks, 0)
    assert row["train_photos"] == round(masks[0].sum() / 2) and row["photos"] == masks[2].sum()
    with pytest.raises(ValueError, match="train_fraction"):
        options.Option("x", {}, True, train_fraction=0)


def test_the_learning_curve_extrapolates_log_linearly_to_the_goal():
    curve = [(500, 0.80), (1000, 0.81), (2000, 0.82)]  # +0.01 per doubling
    assert abs(options.photos_for(0.84, curve) - 8000) < 1
    assert options.photos_for(0.9, [(500, 0.8), (1000, 0.8)]) is None
    # Flat up to float noise (as np.polyfit leaves on some BLAS): flat, not an overflow.
    assert options.log_linear_fit([(599, 0.9), (1198, 0.9 + 1e-17), (2396, 0.9)])[0] == 0.0
    assert options.photos_for(0.925, [(599, 0.9), (1198, 0.9 + 1e-17), (2396, 0.9)]) is None
    # A rise too slow to reach the goal within any photo count: no count, not an overflow.
    assert options.photos_for(0.925, [(500, 0.8), (1000, 0.8 + 1e-6)]) is None
    rows = [{"model": "facenet: pool, mirrored", "fold": 0, "train_photos": 2000, "pearson": 0.82},
            {"model": "facenet: pool, mirrored, 25% of training photos (diagnostic)", "fold": 0, "train_photos": 500,
             "pearson": 0.80},
            {"model": "facenet: pool, mirrored, 50% of training photos (diagnostic)", "fold": 0, "train_photos": 1000,
             "pearson": 0.81},
            {"model": "facenet: pool, mirrored, noise-free labels (diagnostic)", "fold": 0, "train_photos": 2000,
             "pearson": 0.85},
            {"model": "facenet: pool", "fold": 0, "train_photos": 2000, "pearson": 0.7}]
    line = options.diagnostics_line(rows, "facenet", goal=0.84)
    assert "noise-free labels pearson 0.8500" in line and "+0.0100 per doubling" in line
    assert "0.84 at 8,000 training photos" in line
    names = [o.name for o in options.diagnostics("facenet")]
    assert names[0].startswith("facenet: pool, mirrored, noise-free") and len(names) == 1 + len(options.LEARNING_CURVE)


def test_faceres_feats_and_the_pairs_are_options_with_their_own_diagnostics():
    faceres_blocks = [f"conv_pw_{i}_relu" for i in range(1, 14)]
    blocks = {"facenet": ["Mixed_6a", "Block8_6_ScaleSum"], "faceres": faceres_blocks}
    opts = {o.name: o for o in options.options(blocks, {"faceres": [options.FEATS]})}
    assert opts["faceres: feats, mirrored"].blocks == {"faceres": ["feats"]}
    assert opts["faceres: pool + feats"].blocks == {"faceres": ["pool", "feats"]}
    assert not opts["faceres: pool + feats"].mirrored
    assert opts["faceres: stage ends + pool"].blocks == {"faceres": ["conv_pw_5_relu", "conv_pw_11_relu", "pool"]}
    assert opts["both: pools + faceres feats, mirrored"].blocks == {"facenet": ["pool"], "faceres": ["pool", "feats"]}
    assert opts["both: other pools + faceres feats, mirrored"].blocks == {"facenet": ["pool"], "faceres": ["feats"]}
    assert "facenet: feats" not in opts
    diag = options.all_diagnostics(("facenet", "faceres"))
    assert len(diag) == 3 * (1 + len(options.LEARNING_CURVE))
    both = [o for o in diag if o.name.startswith(options.BOTH_POOLS)]
    assert [o.blocks for o in both] == [{"facenet": ["pool"], "faceres": ["pool"]}] * 3
    rows = [{"model": o.name, "fold": 0, "train_photos": int(2000 * o.train_fraction), "pearson": p}
            for o, p in zip(both, (0.9, 0.86, 0.87))] + [
        {"model": options.BOTH_POOLS, "fold": 0, "train_photos": 2000, "pearson": 0.88}]
    line = options.diagnostics_line(rows, options.BOTH_POOLS, goal=0.89)
    assert line.startswith(f"diagnostics ({options.BOTH_POOLS}): noise-free labels pearson 0.9000")
    assert "+0.0100 per doubling" in line and "0.89 at 4,000 training photos" in line


def test_without_blocks_only_pools_and_feats_remain():
    blocks = {"facenet": ["Mixed_6a", "Block8_6_ScaleSum"], "faceres": ["conv_pw_5_relu", "conv_pw_11_relu"]}
    opts = options.options(blocks, {"faceres": [options.FEATS]}, with_blocks=False)
    used = {n for o in opts for names in o.blocks.values() for n in names}
    assert used == {"pool", options.FEATS}
    names = {o.name for o in opts}
    assert {"facenet: pool, mirrored", "faceres: feats", "both: pools + faceres feats, mirrored"} <= names
