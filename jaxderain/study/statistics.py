"""Uncertainty for the study's verdicts: each point's own seed noise plus the test images.

A verdict's statistic is a function of per-point means: each grid point (arch, category,
rain range, N) is trained with a few seeds, and each seed gives one value of a metric, the
mean over the same test images at every point. Two sources of noise move a statistic:

- Seeds. Each point keeps its own seed variance s_p^2 (no pooling: the spread of net
  removal differs tenfold and more between N). A linear statistic L = sum_p w_p m_p has
  seed variance V_s = sum_p w_p^2 s_p^2 / n_p, with Welch-Satterthwaite degrees of freedom
  V_s^2 / sum_p (w_p^2 s_p^2 / n_p)^2 / (n_p - 1).
- Test images. Every point sees the same images, so the image effects shared by all points
  cancel in a contrast and only their interaction with the point remains. From the
  per-image values (per seed, averaged over seeds) the contrast is formed image by image,
  d_i = sum_p w_p mean_s y_psi; V_i = var(d) / I, less the seed-by-image noise that V_s
  already counts (the two-way residual of each point, sum_p w_p^2 r_p^2 / (n_p I)),
  with I - 1 degrees of freedom.

The interval is L +- t(df) sqrt(V_s + V_i), df by Welch-Satterthwaite over both parts
(`linear`). A ratio of two linear statistics gets Fieller's interval (`ratio`): the values
rho for which numerator - rho denominator is within its own interval of 0, so it always
holds its estimate and may be unbounded. Non-linear statistics get a parametric bootstrap
with the same parts (`bootstrap`). A point with fewer than two usable seeds gives no
interval, ever: its spread is unknown and is not borrowed from other points.
`tests/test_statistics.py` checks the coverage of `linear` on simulated studies.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np
import scipy.optimize
import scipy.stats

PASS, FAIL, INCONCLUSIVE = 'PASS', 'FAIL', 'INCONCLUSIVE'
NOT_RUN, NOT_CONVERGED = 'NOT RUN', 'NOT CONVERGED'
LEVEL = 0.95
DRAWS = 4000
NO_INTERVAL = 'no interval: a point with one usable seed'


@dataclasses.dataclass(frozen=True)
class Samples:
  """One grid point's metric: per-seed values (S,) and, where the eval kept them, per-seed
  per-image values (S, I), the images in the same order at every point."""
  values: np.ndarray
  per_image: np.ndarray | None = None

  @property
  def seeds(self) -> int:
    return len(self.values)

  @property
  def mean(self) -> float:
    return float(np.mean(self.values))

  @property
  def variance(self) -> float:
    return float(np.var(self.values, ddof=1)) if self.seeds > 1 else math.nan

  def residual_variance(self) -> float:
    """Seed-by-image noise of the per-image values: the two-way ANOVA residual."""
    y = self.per_image
    residual = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    return float(np.sum(residual ** 2) / ((y.shape[0] - 1) * (y.shape[1] - 1)))


def samples(values, per_image=None) -> Samples:
  """Samples from per-seed values and optional per-seed per-image lists (images with a
  non-finite value at any seed are left out)."""
  values = np.asarray(values, float)
  if per_image is not None:
    per_image = np.asarray(per_image, float).reshape(len(values), -1)
  return Samples(values, per_image)


@dataclasses.dataclass(frozen=True)
class Interval:
  """A statistic's value on the point means, its 95% interval (NaN: none; a bound may be
  infinite), degrees of freedom, and one-sided p-values of "not above 0" (p_above) and
  "not below 0" (p_below)."""
  estimate: float
  low: float
  high: float
  df: float
  p_above: float = math.nan
  p_below: float = math.nan

  def text(self, digits: int = 3) -> str:
    if math.isnan(self.low):
      return f'{self.estimate:.{digits}g} ({NO_INTERVAL})'
    return f'{self.estimate:.{digits}g} [{self.low:.{digits}g}, {self.high:.{digits}g}]'

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def _none(estimate: float) -> Interval:
  return Interval(estimate, math.nan, math.nan, 0)


def _shared_images(points: Sequence[Samples]) -> list[np.ndarray] | None:
  """Each point's (S, I) per-image values over the images finite at every point; None
  when a point has none or the points saw different numbers of images."""
  if any(p.per_image is None for p in points):
    return None
  if len({p.per_image.shape[1] for p in points}) != 1:
    return None
  finite = np.all([np.isfinite(p.per_image).all(0) for p in points], axis=0)
  return [p.per_image[:, finite] for p in points] if finite.sum() > 2 else None


def _parts(weights: np.ndarray, points: Sequence[Samples], seeds: int | None = None):
  """(seed terms w^2 s^2 / n, their dfs, image variance, image df) of a contrast; the
  image part is (0, inf) without per-image values. `seeds`: as if every point had that
  many seeds with the spread it has (power analysis)."""
  counts = np.array([seeds or p.seeds for p in points], float)
  seed_terms = weights ** 2 * np.array([p.variance for p in points]) / counts
  images = _shared_images(points)
  if images is None:
    return seed_terms, counts - 1, 0.0, math.inf
  contrast = sum(w * y.mean(0) for w, y in zip(weights, images))
  count = contrast.size
  shared = float(np.var(contrast, ddof=1)) / count
  # The part of var(d) from seed-by-image noise, as the points were measured.
  residual = sum(w ** 2 * dataclasses.replace(p, per_image=y).residual_variance() / (
      p.seeds * count) for w, p, y in zip(weights, points, images))
  return seed_terms, counts - 1, max(shared - residual, 0.0), count - 1.0


def _satterthwaite(terms: np.ndarray, dfs: np.ndarray) -> float:
  total = terms.sum()
  if total <= 0:
    return math.inf
  with np.errstate(divide='ignore'):
    return float(total ** 2 / np.sum(np.where(terms > 0, terms ** 2 / dfs, 0.0)))


def _usable(weights: np.ndarray, points: Sequence[Samples]) -> bool:
  return all(p.seeds > 1 for w, p in zip(weights, points) if w != 0)


def linear(weights: Sequence[float], points: Sequence[Samples],
           seeds: int | None = None) -> Interval:
  """The interval of sum_p w_p mean_p (module docstring): seed and image variance,
  Welch-Satterthwaite degrees of freedom, a t interval. `seeds`: the interval expected
  with that many seeds a point, each with the spread it has (power analysis)."""
  weights = np.asarray(weights, float)
  estimate = float(weights @ np.array([p.mean for p in points]))
  if not _usable(weights, points):
    return _none(estimate)
  nonzero = weights != 0
  seed_terms, seed_dfs, image_variance, image_df = _parts(
      weights[nonzero], [p for p, k in zip(points, nonzero) if k], seeds)
  terms = np.append(seed_terms, image_variance)
  df = _satterthwaite(terms, np.append(seed_dfs, image_df))
  se = math.sqrt(terms.sum())
  if se == 0:
    return Interval(estimate, estimate, estimate, df, float(estimate <= 0),
                    float(estimate >= 0))
  half = scipy.stats.t.ppf((1 + LEVEL) / 2, df) * se
  return Interval(estimate, estimate - half, estimate + half, df,
                  float(scipy.stats.t.sf(estimate / se, df)),
                  float(scipy.stats.t.cdf(estimate / se, df)))


def ratio(numerator: Sequence[float], denominator: Sequence[float],
          points: Sequence[Samples]) -> Interval:
  """Fieller's interval of (numerator . means) / (denominator . means): every rho whose
  contrast numerator - rho denominator is within its own 95% interval of 0 (`linear`'s
  variance and degrees of freedom at that rho), so the interval holds the estimate and a
  bound lies beyond a value v exactly when that contrast at v is not significant. A bound
  is infinite when no finite rho is excluded on that side (the denominator is not clearly
  away from 0); a set of two rays becomes (-inf, inf)."""
  a_w, b_w = np.asarray(numerator, float), np.asarray(denominator, float)
  means = np.array([p.mean for p in points])
  a, b = float(a_w @ means), float(b_w @ means)
  estimate = a / b if b else math.nan
  if not _usable(np.abs(a_w) + np.abs(b_w), points) or not b:
    return _none(estimate)

  def excluded(rho: float) -> bool:
    interval = linear(a_w - rho * b_w, points)
    return interval.low > 0 or interval.high < 0

  bounds = []
  for side in (-1.0, 1.0):
    inside, step = estimate, max(abs(estimate), 1e-3)
    while not excluded(estimate + side * step):
      inside, step = estimate + side * step, step * 2
      if step > 1e6 * max(abs(estimate), 1.0):
        bounds.append(side * math.inf)
        break
    else:
      outside = estimate + side * step
      for _ in range(60):
        middle = (inside + outside) / 2
        inside, outside = (inside, middle) if excluded(middle) else (middle, outside)
      bounds.append(inside)
  far = 1e6 * max(abs(estimate), 1.0)
  if math.isinf(bounds[0]) != math.isinf(bounds[1]) and not excluded(
      -far if math.isinf(bounds[1]) else far):
    bounds = [-math.inf, math.inf]  # two rays joined through infinity: keep their hull
  df = linear(a_w - estimate * b_w, points).df
  return Interval(estimate, bounds[0], bounds[1], df)


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray], points: Sequence[Samples],
              draws: int = DRAWS, seed: int = 0, seeds: int | None = None) -> Interval:
  """Percentile interval of a non-linear `statistic` (an array (..., K) of K point means
  -> (...)): each draw moves every point mean by s_p / sqrt(n_p) times a t(n_p - 1)
  variate and, where per-image values are kept, by the change of its seed-averaged
  image mean under one resampling of the images shared by all points. `seeds`: as
  `linear`'s."""
  means = np.array([p.mean for p in points])
  estimate = float(statistic(means))
  if not _usable(np.ones(len(points)), points):
    return _none(estimate)
  rng = np.random.default_rng(seed)
  counts = np.array([seeds or p.seeds for p in points])
  spread = np.sqrt([p.variance for p in points] / counts)
  dfs = counts - 1
  sampled = means + spread * rng.standard_t(dfs, size=(draws, len(points)))
  images = _shared_images(points)
  if images is not None:
    curves = np.stack([y.mean(0) for y in images])  # (K, I)
    picks = rng.integers(0, curves.shape[1], size=(draws, curves.shape[1]))
    sampled += curves[:, picks].mean(-1).T - curves.mean(1)
  values = np.asarray(statistic(sampled), float)
  low, high = np.percentile(values, [(1 - LEVEL) / 2 * 100, (1 + LEVEL) / 2 * 100])
  return Interval(estimate, float(low), float(high), math.nan,
                  float(np.mean(values <= 0)), float(np.mean(values >= 0)))


def direction(interval: Interval, expected: int) -> str:
  """PASS when the interval lies wholly on the `expected` side of 0 (+1 or -1), FAIL when
  wholly on the other side, else INCONCLUSIVE (also without an interval)."""
  if math.isnan(interval.low) or math.isnan(interval.high):
    return INCONCLUSIVE
  if expected * interval.low > 0 and expected * interval.high > 0:
    return PASS
  if expected * interval.low < 0 and expected * interval.high < 0:
    return FAIL
  return INCONCLUSIVE


def combine(statuses: Sequence[str]) -> str:
  """One status for statistics that must all hold: FAIL if any fails, PASS if all pass,
  else INCONCLUSIVE; NOT RUN when there is none."""
  if not statuses:
    return NOT_RUN
  if FAIL in statuses:
    return FAIL
  return PASS if all(s == PASS for s in statuses) else INCONCLUSIVE


def p_agree(interval: Interval, expected: int) -> float:
  """Two-sided p-value for the `expected` side of 0 (< 0.05 exactly when the interval of
  a linear statistic lies on that side); NaN without an interval."""
  one_sided = interval.p_above if expected > 0 else interval.p_below
  return min(2 * one_sided, 1.0)


def holm(p_values: Sequence[float], alpha: float = 1 - LEVEL) -> list[bool]:
  """Holm's step-down: which of the hypotheses are rejected at family-wise level alpha
  (NaN p-values are never rejected and do not count towards m)."""
  order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
  rejected = [False] * len(p_values)
  for rank, (p, i) in enumerate(order):
    if p > alpha / (len(order) - rank):
      break
    rejected[i] = True
  return rejected


def slope_weights(x: Sequence[float]) -> np.ndarray:
  """Weights of the least-squares slope of K point means against x."""
  x = np.asarray(x, float)
  return (x - x.mean()) / np.sum((x - x.mean()) ** 2)


def interpolation_weights(x: Sequence[float], at: float) -> np.ndarray:
  """Weights giving the piecewise-linear interpolation of K means (ascending x) at `at`."""
  x = np.asarray(x, float)
  upper = int(np.clip(np.searchsorted(x, at), 1, len(x) - 1))
  share = (at - x[upper - 1]) / (x[upper] - x[upper - 1])
  weights = np.zeros(len(x))
  weights[upper - 1], weights[upper] = 1 - share, share
  return weights


def halfway_crossing(x: Sequence[float]) -> Callable[[np.ndarray], np.ndarray]:
  """A statistic: where a curve falls through half its fall, in x (log2 N). The K means
  (ascending x) get a non-increasing least-squares (isotonic) fit; the crossing is where
  that fit, linear between the x, passes the midpoint of its two ends. A fit that does not
  fall (no collapse within the grid) gives the largest x."""
  x = np.asarray(x, float)

  def one(means: np.ndarray) -> float:
    fit = scipy.optimize.isotonic_regression(means, increasing=False).x
    if fit[0] <= fit[-1]:
      return float(x[-1])
    half = (fit[0] + fit[-1]) / 2
    k = int(np.argmax(fit <= half))  # first value at or below half; k >= 1
    share = (fit[k - 1] - half) / (fit[k - 1] - fit[k])
    return float(x[k - 1] + share * (x[k] - x[k - 1]))

  def statistic(means):
    means = np.asarray(means, float)
    flat = means.reshape(-1, means.shape[-1])
    return np.array([one(m) for m in flat]).reshape(means.shape[:-1])

  return statistic
