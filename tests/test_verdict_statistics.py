"""The statistics of a verdict (issue 27): the recording-clustered, paired bootstrap against hand-computed cases,
and the window-level, unpaired interval it replaces giving a different (wrong) answer on the same data."""
from __future__ import annotations

import math

import numpy as np
import pytest

from chanmusic.evaluation.intervals import (bootstrap_ci95, cluster_bootstrap, holm,
                                            paired_cluster_bootstrap)


def _correlated():
    """4 recordings x 10 windows, windows of a recording perfectly correlated: music hits every window of
    recording 0 and none of the others; the control hits nothing."""
    rec = np.repeat(np.arange(4), 10)
    music = np.repeat([1.0, 0.0, 0.0, 0.0], 10)
    return music, np.zeros(40), rec


def test_paired_cluster_bootstrap_matches_the_hand_computed_distribution():
    # Resampling 4 recordings: the gain is K/4 with K ~ Binomial(4, 1/4) (how often recording 0 is drawn).
    # P(K=0) = 81/256 > 2.5%, so the 2.5% quantile is 0; P(K=4) = 1/256 < 2.5% <= P(K>=3) = 13/256, so the
    # 97.5% quantile is 3/4. Estimate: 10 hits / 40 items. p(gain <= 0) ~ P(K=0) = 0.316.
    music, control, rec = _correlated()
    iv = paired_cluster_bootstrap(music, control, rec, seed=3)
    assert (iv.estimate, iv.low, iv.high, iv.clusters) == (0.25, 0.0, 0.75, 4)
    assert iv.p_le_zero == pytest.approx(81 / 256, abs=0.03)
    assert iv.low <= 0  # no verdict: one recording of four carries the whole gain


def test_window_level_unpaired_interval_gives_a_different_answer():
    # What the report did before: each arm's bootstrap over windows, combined as independent normal errors.
    # Hand: music SE = sqrt(.25 * .75 / 40) = 0.0685, control SE = 0 -> 0.25 +- 1.96 * 0.0685 = [0.116, 0.384]:
    # a false "beats" on data where only one recording of four responds.
    music, control, rec = _correlated()
    lo_m, hi_m = bootstrap_ci95(music, seed=3)
    lo_c, hi_c = bootstrap_ci95(control, seed=3)
    se = math.sqrt(((hi_m - lo_m) / 3.92) ** 2 + ((hi_c - lo_c) / 3.92) ** 2)
    unpaired = (0.25 - 1.96 * se, 0.25 + 1.96 * se)
    assert unpaired[0] == pytest.approx(0.25 - 1.96 * math.sqrt(0.25 * 0.75 / 40), abs=0.03)
    assert unpaired[0] > 0                                   # the window-level, unpaired version "beats"
    iv = paired_cluster_bootstrap(music, control, rec, seed=3)
    assert iv.low <= 0 < unpaired[0]                         # the clustered, paired one does not


def test_pairing_removes_what_both_arms_share():
    # Control = music minus one hit in every tenth window: recordings differ a lot (0.1 .. 0.9 hit rates) but the
    # paired difference is 0.1 in every recording, so its interval is exactly [0.1, 0.1] (hand), while two
    # clustered intervals of the arms taken apart overlap widely.
    rng = np.random.default_rng(0)
    rec = np.repeat(np.arange(8), 10)
    rates = np.repeat(np.linspace(0.1, 0.9, 8), 10)
    music = (rng.random(80) < rates).astype(float)
    control = music.copy()
    for r in range(8):                                       # take one hit of each recording away
        idx = np.flatnonzero((rec == r) & (music == 1))
        if len(idx) == 0:
            music[np.flatnonzero(rec == r)[0]] = 1.0
            idx = np.flatnonzero((rec == r) & (music == 1))
        control[idx[0]] = 0.0
    iv = paired_cluster_bootstrap(music, control, rec)
    assert iv.estimate == pytest.approx(0.1) and iv.low == pytest.approx(0.1) and iv.high == pytest.approx(0.1)
    apart_m, apart_c = cluster_bootstrap(music, rec), cluster_bootstrap(control, rec)
    assert apart_m.low < apart_c.high                        # unpaired: the two arms' intervals overlap


def test_cluster_bootstrap_is_a_ratio_of_sums_and_seeded():
    # Two recordings of unequal length: 3 of 3 hits and 0 of 1; the mean over items is 3/4 (not (1 + 0)/2).
    v, rec = np.array([1.0, 1.0, 1.0, 0.0]), np.array([5, 5, 5, 9])
    iv = cluster_bootstrap(v, rec, seed=1)
    assert iv.estimate == 0.75 and iv.low == 0.0 and iv.high == 1.0   # resamples {9,9}: 0, {5,5}: 1
    assert cluster_bootstrap(v, rec, seed=1) == iv
    assert np.isnan(cluster_bootstrap(np.array([np.nan]), np.array([0])).estimate)


def test_holm_against_hand_computed_adjustments():
    # p = (0.01, 0.04, 0.03): sorted 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max-accumulated 0.06.
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # (0.9, 0.8): 0.8*2 = 1.6 capped at 1, then 0.9*1 lifted to 1 by the running maximum
    assert holm([0.5]) == [0.5] and holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
