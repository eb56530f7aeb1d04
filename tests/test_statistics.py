"""The verdicts' statistics on analytic cases: the seed-noise bootstrap and its verdicts."""

import math

import numpy as np
import pytest
import scipy.stats

from jaxderain.study import statistics

LOG2_N = np.log2([8, 32, 128, 512, 4096])


def seeds_around(means, noise, seeds=2, seed=0):
  """Per-point seed values: each mean plus Normal(0, noise) draws."""
  rng = np.random.default_rng(seed)
  return [list(m + noise * rng.standard_normal(seeds)) for m in means]


def slope_verdict(groups):
  interval = statistics.bootstrap(statistics.slope(LOG2_N), groups)
  return statistics.direction(interval, -1), interval


def test_monotone_curve_with_tiny_noise_passes():
  status, interval = slope_verdict(seeds_around(0.6 - 0.05 * LOG2_N, noise=0.005))
  assert status == statistics.PASS
  assert interval.low < -0.05 < interval.high < 0 and interval.df == 5


@pytest.mark.parametrize('seed', range(5))
def test_pure_noise_is_inconclusive(seed):
  status, interval = slope_verdict(seeds_around(np.full(5, 0.4), noise=0.05, seed=seed))
  assert status == statistics.INCONCLUSIVE
  assert interval.low < 0 < interval.high


def test_reversed_curve_fails():
  status, _ = slope_verdict(seeds_around(0.2 + 0.05 * LOG2_N, noise=0.005))
  assert status == statistics.FAIL


def test_one_seed_a_point_gives_no_interval_and_no_verdict():
  status, interval = slope_verdict([[v] for v in 0.6 - 0.05 * LOG2_N])
  assert math.isnan(interval.low) and interval.df == 0
  assert interval.estimate == pytest.approx(-0.05)
  assert status == statistics.INCONCLUSIVE and 'no interval' in interval.text()


def test_difference_interval_is_the_pooled_t_interval():
  groups = [[1.0, 1.4, 1.2], [0.5, 0.9], [3.0, 3.3]]  # the third point only adds noise
  interval = statistics.bootstrap(statistics.difference(0, 1), groups, draws=200_000)
  variance, df = statistics.pooled_noise(groups)
  assert df == 4
  assert variance == pytest.approx((0.08 + 0.08 + 0.045) / 4)
  half = scipy.stats.t.ppf(0.975, df) * math.sqrt(variance * (1 / 3 + 1 / 2))
  assert interval.estimate == pytest.approx(1.2 - 0.7)
  assert interval.low == pytest.approx(0.5 - half, abs=0.01)
  assert interval.high == pytest.approx(0.5 + half, abs=0.01)


def test_slope_and_collapse_point_on_exact_curves():
  means = 3.0 - 0.5 * LOG2_N
  assert statistics.slope(LOG2_N)(means) == pytest.approx(-0.5)
  # A step from 1 to 0 between N = 32 and 128 stands, by area, halfway between them.
  x = np.arange(3, 13)
  step = np.where(x <= 5, 1.0, 0.0)
  assert statistics.collapse_log2(x)(step) == pytest.approx(5.5)
  # Shifted two doublings to the right: two more.
  assert statistics.collapse_log2(x)(np.where(x <= 7, 1.0, 0.0)) == pytest.approx(7.5)
  # Scale and offset do not move it; equal ends have none.
  assert statistics.collapse_log2(x)(0.2 + 0.3 * step) == pytest.approx(5.5)
  assert math.isnan(statistics.collapse_log2(x)(np.ones(10)))


def test_a_ratio_infinite_in_many_draws_has_an_infinite_bound():
  groups = [[1.0, 1.1], [0.0, 0.1]]  # the denominator's mean is often 0 or below
  ratio = lambda means: np.asarray(means)[..., 0] / np.maximum(np.asarray(means)[..., 1], 0)
  with np.errstate(divide='ignore'):
    interval = statistics.bootstrap(ratio, groups)
  assert math.isfinite(interval.low) and interval.low > 0 and interval.high == math.inf
  assert statistics.direction(interval, +1) == statistics.PASS
  assert '[' in interval.text() and 'no interval' not in interval.text()


def test_combine_and_direction():
  interval = lambda low, high: statistics.Interval(0.0, low, high, 3)
  assert statistics.direction(interval(0.1, 0.2), +1) == statistics.PASS
  assert statistics.direction(interval(-math.inf, -0.2), +1) == statistics.FAIL
  assert statistics.direction(interval(0.1, 0.2), -1) == statistics.FAIL
  assert statistics.direction(interval(-0.1, 0.2), +1) == statistics.INCONCLUSIVE
  assert statistics.combine([]) == statistics.NOT_RUN
  assert statistics.combine(['PASS', 'PASS']) == 'PASS'
  assert statistics.combine(['PASS', 'INCONCLUSIVE']) == 'INCONCLUSIVE'
  assert statistics.combine(['PASS', 'INCONCLUSIVE', 'FAIL']) == 'FAIL'
