"""The primary tests: one per claim, fixed before the confirmatory runs that decide them.

docs/study.md#primary-tests states them in words and says why; this module is that text
as code. Every primary test is on resnet trained on `natural` backgrounds, tested on the
built-in unseen rain (`natural_unseen`, measured outside the small and medium ranges:
study/test_rain.py) or, for the distance claim, on the angle-shifted rains beyond the
medium range; it is decided on the confirmatory seeds alone (CONFIRMATORY_SEEDS), and its
exploratory estimate comes from the exploratory seeds (EXPLORATORY_SEEDS). A claim's
verdict is its primary test's. Intervals: study/statistics.py (each point's own seed
spread plus the test images).

Input rows: study/results.py's result_rows (with per-image values).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from jaxderain.data.testsets import UNSEEN, set_name
from jaxderain.rain import shifts
from jaxderain.study import statistics
from jaxderain.study.statistics import FAIL, INCONCLUSIVE, NOT_RUN, PASS, Interval, Samples

ARCH, CATEGORY = 'resnet', 'natural'
NUM_PATCHES = (8, 32, 128, 512, 4096)
FEW, MANY = NUM_PATCHES[0], NUM_PATCHES[-1]
EXPLORATORY_SEEDS = (0, 1, 2)
MAX_SEEDS = 10  # the most seeds a point a test may ask for
# Fixed by the power analysis (`study plan --power`): claim 2 needs more than MAX_SEEDS, so
# every primary point runs MAX_SEEDS fresh seeds; the second rung runs the first
# TREND_SEEDS of them.
CONFIRMATORY_SEEDS = tuple(range(10, 10 + MAX_SEEDS))
TREND_SEEDS = 5
# The angle-shifted rains beyond the medium range's 30 degrees: offsets 10 ... 60.
DISTANCE_ANGLES = tuple(a for a in shifts.ANGLES if a > 30)
FLAT_FROM, FLAT_RATIO = 256, 0.25  # claim 3: E_B flattens by N = 256
REMOVAL = 'net_removal'

X = np.log2(NUM_PATCHES)


@dataclasses.dataclass(frozen=True)
class Statistic:
  """One statistic of a primary test: a linear contrast of point means (`weights` over
  `cells`), a ratio of two (`denominator`), or a non-linear `function` of the means.
  cells: (metric, rain range, N, test-set suffixes averaged per seed and image).
  expected: the paper's sign; minimum_effect: the smallest effect worth finding (units of
  the statistic), for the power analysis."""
  name: str
  cells: tuple[tuple[str, str, int, tuple[str, ...]], ...]
  expected: int
  minimum_effect: float
  weights: tuple[float, ...] = ()
  denominator: tuple[float, ...] = ()
  function: Callable[[np.ndarray], np.ndarray] | None = None

  def interval(self, points: list[Samples], seeds: int | None = None) -> Interval:
    if self.function is not None:
      return statistics.bootstrap(self.function, points, seeds=seeds)
    if self.denominator:
      return statistics.ratio(self.weights, self.denominator, points)
    return statistics.linear(self.weights, points, seeds)


def _curve(metric, rain_range, testsets=(UNSEEN,)):
  return tuple((metric, rain_range, n, testsets) for n in NUM_PATCHES)


def _two(metric, rain_range, testsets=(UNSEEN,)):
  return ((metric, rain_range, FEW, testsets), (metric, rain_range, MANY, testsets))


def _shift(means):
  """Claim 2: medium's half-way crossing minus small's (means: small's 5, medium's 5)."""
  crossing = statistics.halfway_crossing(X)
  means = np.asarray(means)
  return crossing(means[..., 5:]) - crossing(means[..., :5])


_AT_FLAT = statistics.interpolation_weights(X, math.log2(FLAT_FROM))
_EARLY = np.eye(len(X))[0] - _AT_FLAT  # E_B(8) - E_B(256): the drop before 256
_LATE = _AT_FLAT - np.eye(len(X))[-1]  # E_B(256) - E_B(4096): the change after
_DISTANCE_SETS = tuple(f'angle{a}' for a in DISTANCE_ANGLES)


@dataclasses.dataclass(frozen=True)
class PrimaryTest:
  """A claim's primary test: its statistics and the rule turning them into a status."""
  claim: object
  text: str
  statistics: tuple[Statistic, ...]
  decide: Callable[[dict[str, Interval]], str]
  rung_claim: bool = False  # also run at the second rung (cpu-long)


def _falls_and_flattens(iv):
  slope, ratio = iv['E_B slope'], iv['flattening']
  inside = -FLAT_RATIO < ratio.low and ratio.high < FLAT_RATIO
  outside = ratio.low > FLAT_RATIO or ratio.high < -FLAT_RATIO
  if statistics.direction(slope, -1) == FAIL or outside:
    return FAIL
  return PASS if statistics.direction(slope, -1) == PASS and inside else INCONCLUSIVE


def _shift_rule(iv):
  shift = statistics.direction(iv['collapse shift'], +1)
  if shift == FAIL:
    return FAIL
  falls = statistics.direction(iv['small falls'], +1)
  return PASS if shift == PASS and falls == PASS else INCONCLUSIVE


def _all(expected: dict[str, int]):
  return lambda iv: statistics.combine([statistics.direction(iv[k], s)
                                        for k, s in expected.items()])


TESTS = (
    PrimaryTest(1, 'net removal per doubling of N, medium range, N = 8 ... 4096', (
        Statistic('slope', _curve(REMOVAL, 'medium'), -1, 0.005,
                  tuple(statistics.slope_weights(X))),), _all({'slope': -1}), True),
    PrimaryTest(2, 'shift of the collapse from the small to the medium range, in log2 N '
                '(half-way crossing of an isotonic fit; largest N when a curve does not '
                'fall); PASS needs the small curve to fall', (
                    Statistic('collapse shift', _curve(REMOVAL, 'small') +
                              _curve(REMOVAL, 'medium'), +1, 1.0, function=_shift),
                    Statistic('small falls', _two(REMOVAL, 'small'), +1, 0.05, (1.0, -1.0))),
                _shift_rule),
    PrimaryTest(3, f'E_B per doubling of N, and the change after N = {FLAT_FROM} over the '
                f'drop before it within +-{FLAT_RATIO}, medium range', (
                    Statistic('E_B slope', _curve('E_B', 'medium'), -1, 0.25,
                              tuple(statistics.slope_weights(X))),
                    Statistic('flattening', _curve('E_B', 'medium'), -1, 0.5,
                              tuple(_LATE), tuple(_EARLY))), _falls_and_flattens),
    PrimaryTest(5, f'N = {FEW} minus N = {MANY}, medium range: net removal and E_B both '
                'higher', (
                    Statistic('net removal', _two(REMOVAL, 'medium'), +1, 0.05, (1.0, -1.0)),
                    Statistic('E_B', _two('E_B', 'medium'), +1, 1.0, (1.0, -1.0))),
                _all({'net removal': +1, 'E_B': +1}), True),
    PrimaryTest('distance', f'N = {FEW} minus N = {MANY} net removal, medium range, mean '
                f'over the angle-shifted rains {DISTANCE_ANGLES[0]}-{DISTANCE_ANGLES[-1]} '
                'degrees (10-60 beyond the range)', (
                    Statistic('gap beyond', _two(REMOVAL, 'medium', _DISTANCE_SETS), +1, 0.05,
                              (1.0, -1.0)),), _all({'gap beyond': +1})),
)


def cell_samples(rows, cell, seeds) -> Samples | None:
  """The Samples of one cell (Statistic.cells) from converged rows of the given seeds:
  per seed, the mean over the cell's test sets; None without a seed."""
  metric, rain_range, n, testsets = cell
  names = {set_name(CATEGORY, t) for t in testsets}
  by_seed = {}
  for row in rows:
    if (row['arch'], row['category'], row['rain_range'], row['num_patches']) != (
        ARCH, CATEGORY, rain_range, n) or row['seed'] not in seeds:
      continue
    if row['testset'] in names and row['converged'] is not False:
      by_seed.setdefault(row['seed'], {})[row['testset']] = row
  values, images = [], []
  for _, sets in sorted(by_seed.items()):
    if len(sets) != len(names):
      continue
    value = np.mean([r[metric] if r[metric] is not None else math.nan for r in sets.values()])
    if not math.isfinite(value):  # a non-finite seed is not usable (and is counted)
      continue
    values.append(value)
    images.append(np.mean([r['per_image'][metric] for r in sets.values()], axis=0))
  if not values:
    return None
  same = len({len(i) for i in images}) == 1 and len(images[0]) > 0
  return statistics.samples(values, images if same else None)


@dataclasses.dataclass
class Outcome:
  """A primary test on one set of seeds: status, each statistic's interval, the seeds
  each cell had (cell label -> count)."""
  test: PrimaryTest
  status: str
  intervals: dict[str, Interval]
  seeds: dict[str, int]

  def text(self) -> str:
    if not self.intervals:
      return 'not run'
    return '; '.join(f'{name} {iv.text()}' for name, iv in self.intervals.items())


def cell_label(cell) -> str:
  metric, rain_range, n, testsets = cell
  return f'{rain_range} N={n} {metric} on {"+".join(testsets)}'


def run(test: PrimaryTest, rows, seeds) -> Outcome:
  """The test on the given seeds; NOT RUN when a cell has no seed at all."""
  intervals, counts = {}, {}
  for statistic in test.statistics:
    points = [cell_samples(rows, cell, seeds) for cell in statistic.cells]
    counts.update({cell_label(c): p.seeds if p else 0
                   for c, p in zip(statistic.cells, points)})
    if any(p is None for p in points):
      return Outcome(test, NOT_RUN, {}, counts)
    intervals[statistic.name] = statistic.interval(points)
  return Outcome(test, test.decide(intervals), intervals, counts)


@dataclasses.dataclass(frozen=True)
class Power:
  """Seeds a point for one statistic: the exploratory estimate, the target half-width
  (half of max(|estimate|, minimum effect)) and the expected half-width by seeds."""
  test: object
  statistic: str
  estimate: float
  minimum_effect: float
  target: float
  half_widths: dict[int, float]

  @property
  def seeds(self) -> int | None:
    """The fewest seeds reaching the target; None when MAX_SEEDS do not."""
    return next((n for n, h in self.half_widths.items() if h <= self.target), None)


def power(rows, seeds=EXPLORATORY_SEEDS) -> list[Power]:
  """Each primary statistic's expected 95% half-width with 2 ... MAX_SEEDS seeds a point,
  from the given (exploratory) seeds' per-point spread and test-image noise."""
  table = []
  for test in TESTS:
    for statistic in test.statistics:
      points = [cell_samples(rows, cell, seeds) for cell in statistic.cells]
      if any(p is None or p.seeds < 2 for p in points):
        continue
      # A ratio is powered through its decision's contrast, late - FLAT_RATIO * early.
      linearised = (dataclasses.replace(statistic, weights=tuple(
          np.subtract(statistic.weights, np.multiply(FLAT_RATIO, statistic.denominator))),
          denominator=()) if statistic.denominator else statistic)
      estimate = linearised.interval(points).estimate
      target = max(abs(estimate), statistic.minimum_effect) / 2
      half = {}
      for n in range(2, MAX_SEEDS + 1):
        interval = linearised.interval(points, seeds=n)
        half[n] = (interval.high - interval.low) / 2
      table.append(Power(test.claim, statistic.name + (
          f' (as change after - {FLAT_RATIO} x drop before)' if statistic.denominator
          else ''), estimate, statistic.minimum_effect, target, half))
  return table


def seeds_needed(table: list[Power]) -> dict[object, int]:
  """Per test, the most seeds any of its statistics needs (MAX_SEEDS when one needs
  more)."""
  needed = {}
  for row in table:
    needed[row.test] = max(needed.get(row.test, 2), row.seeds or MAX_SEEDS)
  return needed


def power_lines(table: list[Power]) -> list[str]:
  """The power analysis as a markdown table."""
  lines = ['| claim | statistic | exploratory estimate | minimum effect | target half-width | '
           + ' | '.join(f'{n} seeds' for n in range(2, MAX_SEEDS + 1)) + ' | seeds needed |',
           '|---|---|---:|---:|---:|' + '---:|' * (MAX_SEEDS - 1) + '---|']
  for row in table:
    needed = row.seeds or f'more than {MAX_SEEDS}: run {MAX_SEEDS}'
    lines.append(f'| {row.test} | {row.statistic} | {row.estimate:.3g} | '
                 f'{row.minimum_effect:g} | {row.target:.3g} | ' +
                 ' | '.join(f'{h:.3g}' for h in row.half_widths.values()) + f' | {needed} |')
  return lines
