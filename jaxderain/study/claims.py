"""The paper's claims as tests: statistics of per-point seed means and the rules that turn
their intervals into PASS, FAIL or INCONCLUSIVE.

One test definition per claim, for any group (arch, category, rain range, values of N):
the primary tests (study/primary.py) are these at one group on the confirmatory seeds,
the secondary tests (study/verdicts.py) the same at every other group. Removal is net
removal (eval/metrics.py), which never rewards damage. Intervals: study/statistics.py.

Input rows: study/results.py's result_rows (with per-image values).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from jaxderain.data.testsets import set_name
from jaxderain.study import statistics
from jaxderain.study.statistics import FAIL, INCONCLUSIVE, NOT_RUN, PASS, Interval, Samples

REMOVAL = 'net_removal'  # the removal measure the verdicts use
FLAT_FROM, FLAT_RATIO = 256, 0.25  # claim 3: E_B's change after N = 256 within +-0.25 of
# its drop before
# How a statistic enters its test's status: DECIDES (its FAIL fails the test, and the test
# passes only if it passes), NEEDS (the test passes only if it passes; its FAIL makes the
# test INCONCLUSIVE), REPORTED (shown beside, never counted).
DECIDES, NEEDS, REPORTED = 'decides', 'needs', 'reported'


@dataclasses.dataclass(frozen=True)
class Cell:
  """One grid point's metric on one or more test sets (averaged per seed and image)."""
  arch: str
  category: str
  rain_range: str
  num_patches: int
  metric: str
  testsets: tuple[str, ...]  # test rain names, e.g. ('unseen',)

  def label(self) -> str:
    return (f'{self.arch}/{self.category}/{self.rain_range} N={self.num_patches} '
            f'{self.metric} on {"+".join(self.testsets)}')


@dataclasses.dataclass(frozen=True)
class Statistic:
  """A linear contrast of the cells' means (`weights`), a ratio of two (`denominator`;
  PASS when it lies inside +-`band`), or a non-linear `function` of the means
  (bootstrap). expected: the paper's sign (linear and bootstrap); minimum_effect: the
  smallest effect worth finding, in the statistic's units (power analysis)."""
  name: str
  cells: tuple[Cell, ...]
  expected: int
  minimum_effect: float
  weights: tuple[float, ...] = ()
  denominator: tuple[float, ...] = ()
  band: float = 0.0
  function: Callable[[np.ndarray], np.ndarray] | None = None
  role: str = DECIDES

  def interval(self, points: Sequence[Samples], seeds: int | None = None) -> Interval:
    if self.function is not None:
      return statistics.bootstrap(self.function, points, seeds=seeds)
    if self.denominator:
      return statistics.ratio(self.weights, self.denominator, points)
    return statistics.linear(self.weights, points, seeds)

  def deciding_contrasts(self) -> list[tuple[np.ndarray, int]]:
    """A ratio's decision as linear contrasts with their expected signs: inside +-band
    (with a positive denominator) is numerator - band x denominator < 0 and
    numerator + band x denominator > 0."""
    a, b = np.asarray(self.weights), np.asarray(self.denominator)
    return [(a - self.band * b, -1), (a + self.band * b, +1)]

  def judge(self, points: Sequence[Samples]) -> tuple[Interval, str, float]:
    """(interval, status, two-sided p-value for the paper's side). A ratio PASSes when its
    interval lies inside +-band and FAILs when wholly outside; its p-value is the larger
    of its deciding contrasts' (the tests its interval's bounds invert)."""
    interval = self.interval(points)
    if not self.denominator:
      status = statistics.direction(interval, self.expected)
      return interval, status, statistics.p_agree(interval, self.expected)
    if math.isnan(interval.low):
      status = INCONCLUSIVE
    elif -self.band < interval.low and interval.high < self.band:
      status = PASS
    elif interval.low > self.band or interval.high < -self.band:
      status = FAIL
    else:
      status = INCONCLUSIVE
    return interval, status, max(statistics.p_agree(statistics.linear(w, points), sign)
                                 for w, sign in self.deciding_contrasts())


def rule(statuses: dict[Statistic, str]) -> str:
  """A test's status from its statistics' (see DECIDES, NEEDS, REPORTED)."""
  counted = {s: v for s, v in statuses.items() if s.role != REPORTED}
  if any(v == FAIL for s, v in counted.items() if s.role == DECIDES):
    return FAIL
  return PASS if counted and all(v == PASS for v in counted.values()) else INCONCLUSIVE


@dataclasses.dataclass(frozen=True)
class ClaimTest:
  """One test of a claim on one group: its statistics, decided by `rule`."""
  claim: object
  label: str
  group: dict
  statistics: tuple[Statistic, ...]

  @property
  def cells(self) -> list[Cell]:
    return list(dict.fromkeys(c for s in self.statistics for c in s.cells))


@dataclasses.dataclass
class Outcome:
  """A test run on some seeds. intervals: by statistic name; seeds: per cell label, the
  usable seeds; used: the point names used; dropped: seeds left out for a non-finite
  value; p_agree: the p-value for the paper's side (the largest over its counted
  statistics; NaN without intervals); agrees: for a secondary test, whether it holds on
  the paper's side after the claim's Holm correction (None: not tested)."""
  test: ClaimTest
  status: str
  intervals: dict[str, Interval]
  seeds: dict[str, int] = dataclasses.field(default_factory=dict)
  used: list[str] = dataclasses.field(default_factory=list)
  dropped: list[str] = dataclasses.field(default_factory=list)
  p_agree: float = math.nan
  agrees: bool | None = None

  @property
  def label(self) -> str:
    return self.test.label

  @property
  def main(self) -> Interval | None:
    """The first statistic's interval."""
    return next(iter(self.intervals.values()), None)

  @property
  def seeds_text(self) -> str:
    counts = sorted(set(self.seeds.values()))
    if not counts:
      return 'no seeds'
    return f'{counts[0]} seeds' if len(counts) == 1 else f'{counts[0]}-{counts[-1]} seeds'

  @property
  def has_interval(self) -> bool:
    return bool(self.intervals) and all(
        not math.isnan(iv.low) for s in self.test.statistics if s.role != REPORTED
        for iv in [self.intervals[s.name]])

  def text(self, digits: int = 3) -> str:
    if not self.intervals:
      return 'not run'
    return '; '.join(f'{name} {iv.text(digits)}' for name, iv in self.intervals.items())

  def as_dict(self) -> dict:
    return {'claim': self.test.claim, 'label': self.test.label, 'group': self.test.group,
            'status': self.status, 'statistic': self.text(),
            'intervals': {k: v.as_dict() for k, v in self.intervals.items()},
            'seeds': self.seeds, 'used': self.used, 'dropped': self.dropped,
            'p_agree': self.p_agree, 'agrees': self.agrees}


def cell_samples(rows, cell: Cell, seeds=None) -> tuple[Samples | None, list[str], list[str]]:
  """(Samples of `cell` over the given seeds (all when None), the point names used, the
  points left out for a non-finite value). Rows of points that failed the convergence
  gate are not used."""
  names = {set_name(cell.category, t) for t in cell.testsets}
  by_seed = {}
  for row in rows:
    if (row.key(('arch', 'category', 'rain_range', 'num_patches')) ==
        (cell.arch, cell.category, cell.rain_range, cell.num_patches)
        and (seeds is None or row.seed in seeds) and row.testset in names and row.kept):
      by_seed.setdefault(row.seed, {})[row.testset] = row
  values, images, used, dropped = [], [], [], []
  for _, sets in sorted(by_seed.items()):
    if len(sets) != len(names):
      continue
    point = next(iter(sets.values())).point
    value = np.mean([math.nan if r.metric(cell.metric) is None else r.metric(cell.metric)
                     for r in sets.values()])
    if not math.isfinite(value):
      dropped.append(point)
      continue
    values.append(value)
    used.append(point)
    images.append(np.mean([r.per_image[cell.metric] for r in sets.values()], axis=0))
  if not values:
    return None, used, dropped
  same = len({len(i) for i in images}) == 1 and len(images[0]) > 0
  return statistics.samples(values, images if same else None), used, dropped


def run(test: ClaimTest, rows, seeds=None) -> Outcome:
  """The test on the given seeds' converged rows; NOT RUN when a cell has no seed."""
  samples, counts, used, dropped = {}, {}, set(), []
  for cell in test.cells:
    samples[cell], names, lost = cell_samples(rows, cell, seeds)
    counts[cell.label()] = len(names)
    used.update(names)
    dropped += lost
  if any(s is None for s in samples.values()):
    return Outcome(test, NOT_RUN, {}, counts, sorted(used), dropped)
  intervals, statuses, p_values = {}, {}, []
  for statistic in test.statistics:
    interval, statuses[statistic], p_value = statistic.judge(
        [samples[c] for c in statistic.cells])
    intervals[statistic.name] = interval
    if statistic.role != REPORTED:
      p_values.append(p_value)
  p_agree = max(p_values) if p_values else math.nan
  return Outcome(test, rule(statuses), intervals, counts, sorted(used), dropped, p_agree)


# The tests of each claim, for any group.

def _group(arch, category, rain_range=None) -> dict:
  return {'arch': arch, 'category': category, **({'rain_range': rain_range}
                                                 if rain_range else {})}


def _curve(arch, category, rain_range, ns, metric, testsets):
  return tuple(Cell(arch, category, rain_range, n, metric, testsets) for n in ns)


def falls(arch, category, rain_range, ns, testsets) -> ClaimTest:
  """Claim 1: the least-squares slope of net removal against log2 N is below 0 (the
  paper's E_R slope reported beside it)."""
  weights = tuple(statistics.slope_weights(np.log2(ns)))
  return ClaimTest(1, f'{arch}/{category}/{rain_range}', _group(arch, category, rain_range), (
      Statistic('net removal per doubling of N', _curve(arch, category, rain_range, ns,
                                                        REMOVAL, testsets), -1, 0.005, weights),
      Statistic('E_R per doubling of N', _curve(arch, category, rain_range, ns, 'E_R',
                                                testsets), -1, 0.5, weights, role=REPORTED)))


def collapse(arch, category, narrow, wide, ns_narrow, ns_wide, testsets) -> ClaimTest:
  """Claim 2: the wider range's collapse point minus the narrower's, in log2 N
  (statistics.halfway_crossing) is above 0, and the narrower curve falls (its smallest-N
  net removal above its largest-N one)."""
  first = statistics.halfway_crossing(np.log2(ns_narrow))
  second = statistics.halfway_crossing(np.log2(ns_wide))
  split = len(ns_narrow)
  shift = lambda means: second(means[..., split:]) - first(means[..., :split])
  narrow_curve = _curve(arch, category, narrow, ns_narrow, REMOVAL, testsets)
  return ClaimTest(2, f'{arch}/{category}: {narrow} -> {wide}', _group(arch, category), (
      Statistic('collapse shift in log2 N', narrow_curve + _curve(
          arch, category, wide, ns_wide, REMOVAL, testsets), +1, 1.0, function=shift),
      Statistic(f'{narrow} curve falls', (narrow_curve[0], narrow_curve[-1]), +1, 0.05,
                (1.0, -1.0), role=NEEDS)))


def flattens(arch, category, rain_range, ns, testsets) -> ClaimTest:
  """Claim 3: E_B's slope against log2 N is below 0, and its change from FLAT_FROM to the
  largest N over its drop from the smallest N to FLAT_FROM (E_B at FLAT_FROM
  interpolated in log2 N), signed, lies within +-FLAT_RATIO. `ns` must hold N below and
  above FLAT_FROM."""
  x = np.log2(ns)
  at = statistics.interpolation_weights(x, math.log2(FLAT_FROM))
  first, last = np.eye(len(ns))[0], np.eye(len(ns))[-1]
  curve = _curve(arch, category, rain_range, ns, 'E_B', testsets)
  return ClaimTest(3, f'{arch}/{category}/{rain_range}', _group(arch, category, rain_range), (
      Statistic('E_B per doubling of N', curve, -1, 0.25,
                tuple(statistics.slope_weights(x))),
      Statistic(f'E_B change after {FLAT_FROM} / drop before', curve, -1, 0.5,
                tuple(at - last), tuple(first - at), band=FLAT_RATIO)))


def tradeoff(arch, category, objective, baseline, testsets) -> ClaimTest:
  """Claim 5: an objective (N, rain range) minus the baseline (N, rain range): net
  removal above 0 and E_B above 0."""
  cells = lambda metric: (Cell(arch, category, objective[1], objective[0], metric, testsets),
                          Cell(arch, category, baseline[1], baseline[0], metric, testsets))
  return ClaimTest(5, f'{arch}/{category}: N={objective[0]} {objective[1]} vs '
                   f'N={baseline[0]} {baseline[1]}', _group(arch, category, objective[1]), (
                       Statistic('net removal', cells(REMOVAL), +1, 0.05, (1.0, -1.0)),
                       Statistic('E_B', cells('E_B'), +1, 1.0, (1.0, -1.0))))


def distance(arch, category, rain_range, few, many, testsets) -> ClaimTest:
  """The distance claim: net removal of the fewest backgrounds minus the most, per seed
  and image the mean over `testsets` (the shifted rains beyond the training range), is
  above 0."""
  cells = (Cell(arch, category, rain_range, few, REMOVAL, tuple(testsets)),
           Cell(arch, category, rain_range, many, REMOVAL, tuple(testsets)))
  return ClaimTest('distance', f'{arch}/{category}/{rain_range}: N={few} vs N={many}',
                   _group(arch, category, rain_range), (
                       Statistic('gap beyond the range', cells, +1, 0.05, (1.0, -1.0)),))
