"""Uncertainty for the study's verdicts: a seed-noise bootstrap over grid points.

A verdict's statistic is a function of per-point means: each grid point (arch, category,
rain range, N) was trained with a few seeds, and each seed gives one value of the metric.
With 2-3 seeds a point cannot estimate its own spread (resampling 2 values gives 3 means
and understates the noise), so the noise is pooled: the within-point variance over every
point of a group (one arch and category), s^2 = sum (y - mean_point)^2 / df with
df = sum (seeds - 1). Each bootstrap draw then takes sigma^2 = s^2 df / chi2(df) and
every point mean from Normal(mean, sigma^2 / seeds), and recomputes the statistic; the
95% interval is the 2.5 and 97.5 percentiles of the draws. For a linear statistic (a
difference of means, a slope over N) this is the textbook pooled t-interval; for the
others (a collapse point, a ratio) it carries the same noise through the non-linearity.
It assumes seed noise of one size within a group and normal point means; a group whose
points all have one seed (df = 0) gets no interval.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

PASS, FAIL, INCONCLUSIVE = 'PASS', 'FAIL', 'INCONCLUSIVE'
NOT_RUN, NOT_CONVERGED = 'NOT RUN', 'NOT CONVERGED'
LEVEL = 0.95
DRAWS = 4000


@dataclasses.dataclass(frozen=True)
class Interval:
  """A statistic's value on the seed means and its bootstrap interval (NaN: none; a bound
  is infinite where more than 2.5% of the draws are)."""
  estimate: float
  low: float
  high: float
  df: int

  def text(self, digits: int = 3) -> str:
    if math.isnan(self.low):
      return f'{self.estimate:.{digits}g} (no interval: 1 seed a point)'
    return (f'{self.estimate:.{digits}g} [{self.low:.{digits}g}, {self.high:.{digits}g}]')

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def pooled_noise(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
  """(s^2, df): the within-point variance pooled over points (each a list of per-seed
  values) and its degrees of freedom; (NaN, 0) when no point has two seeds."""
  squares, df = 0.0, 0
  for values in groups:
    values = np.asarray(values, float)
    if len(values) > 1:
      squares += float(np.sum((values - values.mean()) ** 2))
      df += len(values) - 1
  return (squares / df, df) if df else (math.nan, 0)


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray],
              groups: Sequence[Sequence[float]], noise: tuple[float, int] | None = None,
              draws: int = DRAWS, seed: int = 0) -> Interval:
  """The interval of `statistic` over point means (module docstring).

  statistic: maps an array (..., K) of K point means to (...) values; it must accept a
    batch of draws. groups: K lists of per-seed values. noise: (s^2, df) to use instead
    of the pooled noise of `groups` (e.g. pooled over a wider group of points)."""
  means = np.array([np.mean(v) for v in groups], float)
  counts = np.array([len(v) for v in groups], float)
  estimate = float(statistic(means))
  variance, df = noise if noise is not None else pooled_noise(groups)
  if not df or not math.isfinite(variance):
    return Interval(estimate, math.nan, math.nan, 0)
  rng = np.random.default_rng(seed)
  sigma2 = variance * df / rng.chisquare(df, size=(draws, 1))
  sampled = means + rng.standard_normal((draws, len(means))) * np.sqrt(sigma2 / counts)
  values = np.asarray(statistic(sampled), float)
  values = values[~np.isnan(values)]  # undefined draws (e.g. a curve with equal ends)
  if not np.isfinite(values).any():
    return Interval(estimate, math.nan, math.nan, df)
  tail = (1 - LEVEL) / 2 * 100
  # A ratio can be infinite in some draws; between two infinite draws the interpolation
  # gives NaN where the bound is that infinity.
  with np.errstate(invalid='ignore'):
    bounds = np.percentile(values, [tail, 100 - tail])
  bounds = np.where(np.isnan(bounds), np.percentile(values, [tail, 100 - tail],
                                                    method='nearest'), bounds)
  return Interval(estimate, float(bounds[0]), float(bounds[1]), df)


def direction(interval: Interval, expected: int) -> str:
  """PASS when the interval lies wholly on the `expected` side of 0 (+1 or -1), FAIL when
  wholly on the other side, else INCONCLUSIVE (also without an interval). A bound may be
  infinite."""
  if math.isnan(interval.low) or math.isnan(interval.high):
    return INCONCLUSIVE
  if expected * interval.low > 0 and expected * interval.high > 0:
    return PASS
  if expected * interval.low < 0 and expected * interval.high < 0:
    return FAIL
  return INCONCLUSIVE


def combine(statuses: Sequence[str]) -> str:
  """One status for several tests of a claim: FAIL if any fails, PASS if all pass,
  else INCONCLUSIVE; NOT RUN when there is none."""
  if not statuses:
    return NOT_RUN
  if FAIL in statuses:
    return FAIL
  return PASS if all(s == PASS for s in statuses) else INCONCLUSIVE


def slope(x: Sequence[float]) -> Callable[[np.ndarray], np.ndarray]:
  """A statistic: the least-squares slope of K point means against x (K values)."""
  x = np.asarray(x, float)
  weights = (x - x.mean()) / np.sum((x - x.mean()) ** 2)
  return lambda means: np.asarray(means) @ weights


def difference(first: int, second: int) -> Callable[[np.ndarray], np.ndarray]:
  """A statistic: point mean `first` minus point mean `second`."""
  return lambda means: np.asarray(means)[..., first] - np.asarray(means)[..., second]


def collapse_log2(log2_n: Sequence[float]) -> Callable[[np.ndarray], np.ndarray]:
  """A statistic: where a falling curve collapses, in log2 N, as the position of the step
  with the same area. The curve (K means at ascending log2 N) is normalised to 1 at its
  smallest N and 0 at its largest; its trapezoid area over log2 N, added to the smallest
  log2 N, is where a step from 1 to 0 would stand. NaN when the ends are equal."""
  x = np.asarray(log2_n, float)

  def statistic(means):
    means = np.asarray(means, float)
    span = means[..., :1] - means[..., -1:]
    with np.errstate(divide='ignore', invalid='ignore'):
      normalised = np.where(span != 0, (means - means[..., -1:]) / span, np.nan)
    area = np.sum((normalised[..., 1:] + normalised[..., :-1]) / 2 * np.diff(x), axis=-1)
    return x[0] + area

  return statistic
