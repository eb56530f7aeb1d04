"""The verdicts' statistics: per-point seed noise and test images, checked on analytic cases
and on simulated studies whose true values are known."""

import math

import numpy as np
import pytest
import scipy.stats

from jaxderain.study import primary, statistics
from jaxderain.study.statistics import Samples

LOG2_N = np.log2([8, 32, 128, 512, 4096])
SLOPE = statistics.slope_weights(LOG2_N)
DIFFERENCE = np.array([1.0, 0, 0, 0, -1.0])  # N = 8 minus N = 4096


def test_a_difference_without_images_is_welchs_interval():
  few, many = [0.31, 0.18, 0.24, 0.12], [0.051, 0.046, 0.058]
  interval = statistics.linear([1, -1], [Samples(np.array(few)), Samples(np.array(many))])
  welch = scipy.stats.ttest_ind(few, many, equal_var=False)
  expected = welch.confidence_interval(0.95)
  assert interval.estimate == pytest.approx(np.mean(few) - np.mean(many))
  assert (interval.low, interval.high) == pytest.approx((expected.low, expected.high))
  assert statistics.p_agree(interval, +1) == pytest.approx(welch.pvalue)


def test_identical_seeds_leave_the_images_paired_t_interval():
  rng = np.random.default_rng(0)
  images = rng.normal(0, 0.1, 32)
  few = np.tile(0.3 + images + rng.normal(0, 0.05, 32), (3, 1))  # three identical seeds
  many = np.tile(0.1 + images, (3, 1))
  interval = statistics.linear([1, -1], [Samples(few.mean(1), few),
                                         Samples(many.mean(1), many)])
  expected = scipy.stats.ttest_1samp(few[0] - many[0], 0).confidence_interval(0.95)
  assert (interval.low, interval.high) == pytest.approx((expected.low, expected.high))
  assert interval.df == pytest.approx(31)


def test_one_usable_seed_gives_no_interval_ever():
  points = [Samples(np.array([0.5, 0.6])), Samples(np.array([0.2]))]
  for interval in (statistics.linear([1, -1], points),
                   statistics.ratio([1, 0], [0, 1], points),
                   statistics.bootstrap(lambda m: m[..., 0] - m[..., 1], points)):
    assert math.isnan(interval.low) and math.isnan(interval.high)
    assert statistics.NO_INTERVAL in interval.text()
    assert statistics.direction(interval, +1) == statistics.INCONCLUSIVE
  # A point with weight 0 does not count.
  assert math.isfinite(statistics.linear([1, 0], points).low)


def _study(rng, images=32, seeds=None):
  """One simulated study: 5 values of N, `seeds` seeds (default 3-8), seed SD 10- to
  30-fold smaller at the largest N than at the smallest, test images with effects shared
  by every point and effects of their own at each point, and seed-by-image noise. Returns
  the true point means (over seeds and images) and the points."""
  seeds = seeds or rng.integers(3, 9)
  fold = rng.uniform(10, 30)
  seed_sd = 0.06 * fold ** -np.linspace(0, 1, 5)
  truth = 0.2 - 0.015 * (LOG2_N - LOG2_N[0]) + rng.normal(0, 0.01, 5)
  shared = rng.normal(0, 0.1, images)
  points = []
  for p in range(5):
    own = rng.normal(0, 0.03, images)
    values = (truth[p] + rng.normal(0, seed_sd[p], (seeds, 1)) + shared + own +
              rng.normal(0, 0.03, (seeds, images)))
    points.append(Samples(values.mean(1), values))
  return truth, points


def _pooled_interval(weights, points):
  """The exploratory reports' method: seed variance pooled over the points, seed values
  only (its bootstrap is this t interval for a contrast)."""
  squares = sum(np.sum((p.values - p.mean) ** 2) for p in points)
  df = sum(p.seeds - 1 for p in points)
  estimate = sum(w * p.mean for w, p in zip(weights, points))
  half = scipy.stats.t.ppf(0.975, df) * math.sqrt(
      squares / df * sum(w * w / p.seeds for w, p in zip(weights, points)))
  return estimate - half, estimate + half


def test_intervals_cover_the_true_value_in_simulated_studies():
  rng = np.random.default_rng(2024)
  studies = 1000
  covered = {name: [0, 0] for name in ('slope', 'difference')}
  for _ in range(studies):
    truth, points = _study(rng)
    for name, weights in (('slope', SLOPE), ('difference', DIFFERENCE)):
      true = weights @ truth
      interval = statistics.linear(weights, points)
      covered[name][0] += interval.low <= true <= interval.high
      low, high = _pooled_interval(weights, points)
      covered[name][1] += low <= true <= high
  for name, (new, old) in covered.items():
    print(f'{name}: coverage of 95% intervals over {studies} simulated studies: '
          f'per-point seed noise + images {new / studies:.3f}, '
          f'pooled seed noise (the exploratory method) {old / studies:.3f}')
  for name, (new, _) in covered.items():
    assert 0.93 <= new / studies <= 0.97, name


def _coverage(seeds: int, studies: int = 1000) -> dict[str, float]:
  rng = np.random.default_rng(seeds)
  covered = {'slope': 0, 'difference': 0}
  for _ in range(studies):
    truth, points = _study(rng, seeds=seeds)
    for name, weights in (('slope', SLOPE), ('difference', DIFFERENCE)):
      interval = statistics.linear(weights, points)
      covered[name] += interval.low <= weights @ truth <= interval.high
  return {name: count / studies for name, count in covered.items()}


def test_intervals_cover_at_the_confirmatory_seed_count_and_not_at_two_seeds():
  """The primary tests are decided on len(CONFIRMATORY_SEEDS) seeds a point, where the
  intervals hold their level; read with two seeds a point (an interim look), Welch-
  Satterthwaite's degrees of freedom from one-df spreads make them too narrow."""
  decided = _coverage(len(primary.CONFIRMATORY_SEEDS))
  interim = _coverage(2)
  print(f'coverage of 95% intervals: {decided} with {len(primary.CONFIRMATORY_SEEDS)} '
        f'seeds a point, {interim} with 2')
  assert all(0.93 <= c <= 0.97 for c in decided.values()), decided
  assert all(c < 0.93 for c in interim.values()), interim  # below the band accepted above


def test_the_collapse_shift_interval_is_bounded_in_simulated_studies():
  rng = np.random.default_rng(7)
  crossing = statistics.halfway_crossing(LOG2_N)
  shift = lambda means: crossing(means[..., 5:]) - crossing(means[..., :5])
  for _ in range(20):
    _, narrow = _study(rng)
    _, wide = _study(rng)
    interval = statistics.bootstrap(shift, narrow + wide, draws=500)
    span = LOG2_N[-1] - LOG2_N[0]
    assert -span <= interval.low <= interval.estimate <= interval.high <= span


def test_halfway_crossing_on_exact_curves():
  x = np.arange(3, 13)
  crossing = statistics.halfway_crossing(x)
  step = np.where(x <= 5, 1.0, 0.0)  # falls between log2 N = 5 and 6
  assert crossing(step) == pytest.approx(5.5)
  assert crossing(np.where(x <= 7, 1.0, 0.0)) == pytest.approx(7.5)
  assert crossing(0.2 + 0.3 * step) == pytest.approx(5.5)  # scale and offset do not move it
  assert crossing(np.ones(10)) == 12 and crossing(0.1 * x) == 12  # no fall: the largest N
  # A bump is smoothed by the isotonic fit: 1, 0.2, 0.6, 0 -> 1, 0.4, 0.4, 0 crosses at
  # 0.5 between x = 0 and 1.
  assert statistics.halfway_crossing([0, 1, 2, 3])(np.array([1, 0.2, 0.6, 0])) == \
      pytest.approx(5 / 6)
  batch = np.stack([step, np.ones(10)])
  np.testing.assert_allclose(crossing(batch), [5.5, 12])


def test_fieller_interval_holds_its_estimate_and_opens_with_a_noisy_denominator():
  rng = np.random.default_rng(1)
  tight = [Samples(v + rng.normal(0, 0.01, 6)) for v in (1.0, 4.0)]
  interval = statistics.ratio([1, 0], [0, 1], tight)
  assert interval.estimate == pytest.approx(0.25, abs=0.01)
  assert interval.low < interval.estimate < interval.high
  assert interval.high - interval.low < 0.05
  noisy = [Samples(np.array([1.0, 1.1, 0.9])), Samples(np.array([0.1, -0.2, 0.3]))]
  interval = statistics.ratio([1, 0], [0, 1], noisy)
  assert (interval.low, interval.high) == (-math.inf, math.inf)
  assert 'inf' in interval.text()


def test_interpolation_and_slope_weights():
  means = 3.0 - 0.5 * LOG2_N
  assert SLOPE @ means == pytest.approx(-0.5)
  at = statistics.interpolation_weights(LOG2_N, 8.0)  # log2 256: between 128 and 512
  np.testing.assert_allclose(at, [0, 0, 0.5, 0.5, 0])
  assert at @ means == pytest.approx(3.0 - 0.5 * 8)


def test_direction_combine_and_holm():
  interval = lambda low, high: statistics.Interval(0.0, low, high, 3)
  assert statistics.direction(interval(0.1, 0.2), +1) == statistics.PASS
  assert statistics.direction(interval(-math.inf, -0.2), +1) == statistics.FAIL
  assert statistics.direction(interval(0.1, 0.2), -1) == statistics.FAIL
  assert statistics.direction(interval(-0.1, 0.2), +1) == statistics.INCONCLUSIVE
  assert statistics.combine([]) == statistics.NOT_RUN
  assert statistics.combine(['PASS', 'INCONCLUSIVE']) == 'INCONCLUSIVE'
  assert statistics.combine(['PASS', 'INCONCLUSIVE', 'FAIL']) == 'FAIL'
  # Holm at 5% over 4 hypotheses: 0.01 <= 0.05/4, 0.015 <= 0.05/3, 0.03 > 0.05/2: stop.
  assert statistics.holm([0.03, 0.01, 0.015, 0.04]) == [False, True, True, False]
  assert statistics.holm([0.04, math.nan]) == [True, False]  # NaN is not counted


def test_fieller_bounds_invert_the_contrast_test():
  rng = np.random.default_rng(3)
  points = [Samples(v + rng.normal(0, 0.3, 4)) for v in (1.0, 4.0)]
  interval = statistics.ratio([1, 0], [0, 1], points)
  for bound in (interval.low, interval.high):  # the contrast a - bound b is borderline
    contrast = statistics.linear([1, -bound], points)
    assert min(abs(contrast.low), abs(contrast.high)) < 1e-6
