"""The primary tests: one per claim, fixed before the confirmatory runs that decide them.

docs/study.md#primary-tests states them in words and says why; this module is that text
as code. Every primary test is on resnet trained on `natural` backgrounds, tested on the
built-in unseen rain (`natural_unseen`, measured outside the small and medium ranges:
study/unseen.py) or, for the distance claim, on the angle-shifted rains beyond the
medium range. It is decided on the confirmatory seeds alone (CONFIRMATORY_SEEDS); its
exploratory estimate comes from the other seeds. A claim's verdict is its primary test's.
The power analysis (`study plan --power`) sized the seeds.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxderain.data.testsets import UNSEEN
from jaxderain.rain import shifts
from jaxderain.study import claims
from jaxderain.study.claims import REPORTED

ARCH, CATEGORY = 'resnet', 'natural'
NUM_PATCHES = (8, 32, 128, 512, 4096)
FEW, MANY = NUM_PATCHES[0], NUM_PATCHES[-1]
MAX_SEEDS = 10  # the most seeds a point a test may ask for
# Fixed by the power analysis: claim 2 needs more than MAX_SEEDS, so every primary point
# runs MAX_SEEDS fresh seeds; the second rung runs the first TREND_SEEDS of them.
CONFIRMATORY_SEEDS = tuple(range(10, 10 + MAX_SEEDS))
TREND_SEEDS = 5
# The angle-shifted rains beyond the medium range's 30 degrees: offsets 10 ... 60.
DISTANCE_SETS = tuple(f'angle{a}' for a in shifts.ANGLES if a > 30)

TESTS = (
    claims.falls(ARCH, CATEGORY, 'medium', NUM_PATCHES, (UNSEEN,)),
    claims.collapse(ARCH, CATEGORY, 'small', 'medium', NUM_PATCHES, NUM_PATCHES, (UNSEEN,)),
    claims.flattens(ARCH, CATEGORY, 'medium', NUM_PATCHES, (UNSEEN,)),
    claims.tradeoff(ARCH, CATEGORY, (FEW, 'medium'), (MANY, 'medium'), (UNSEEN,)),
    claims.distance(ARCH, CATEGORY, 'medium', FEW, MANY, DISTANCE_SETS),
)
TREND_CLAIMS = (1, 5)  # the primary tests also run at the second rung (cpu-long)


def confirmatory(seed) -> bool:
  return seed in CONFIRMATORY_SEEDS


def exploratory_seeds(rows) -> set:
  """The seeds of `rows` that are not confirmatory."""
  return {r.seed for r in rows if not confirmatory(r.seed)}


@dataclasses.dataclass(frozen=True)
class Power:
  """Seeds a point for one statistic: the exploratory estimate, the target half-width
  (half of max(|estimate|, minimum effect)) and the expected half-width by seeds."""
  claim: object
  statistic: str
  estimate: float
  minimum_effect: float
  target: float
  half_widths: dict[int, float]

  @property
  def seeds(self) -> int | None:
    """The fewest seeds reaching the target; None when MAX_SEEDS do not."""
    return next((n for n, h in self.half_widths.items() if h <= self.target), None)


def power(rows) -> list[Power]:
  """Each primary statistic's expected 95% half-width with 2 ... MAX_SEEDS seeds a point,
  from the exploratory seeds' per-point spread and test-image noise. A ratio is powered
  through the contrast that decides it (claims.Statistic.deciding_contrasts, the first)."""
  seeds, table = exploratory_seeds(rows), []
  for test in TESTS:
    for statistic in test.statistics:
      if statistic.role == REPORTED:
        continue
      points = [claims.cell_samples(rows, cell, seeds)[0] for cell in statistic.cells]
      if any(p is None or p.seeds < 2 for p in points):
        continue
      name = statistic.name
      if statistic.denominator:
        weights = statistic.deciding_contrasts()[0][0]
        statistic = dataclasses.replace(statistic, weights=tuple(weights), denominator=())
        name += f' (as change after - {claims.FLAT_RATIO} x drop before)'
      estimate = statistic.interval(points).estimate
      target = max(abs(estimate), statistic.minimum_effect) / 2
      half = {}
      for n in range(2, MAX_SEEDS + 1):
        interval = statistic.interval(points, seeds=n)
        half[n] = (interval.high - interval.low) / 2
      table.append(Power(test.claim, name, estimate, statistic.minimum_effect, target, half))
  return table


def seeds_needed(table: list[Power]) -> dict[object, int]:
  """Per claim, the most seeds any of its statistics needs (MAX_SEEDS when one needs
  more)."""
  needed = {}
  for row in table:
    needed[row.claim] = max(needed.get(row.claim, 2), row.seeds or MAX_SEEDS)
  return needed


def power_lines(table: list[Power]) -> list[str]:
  """The power analysis as a markdown table."""
  lines = ['| claim | statistic | exploratory estimate | minimum effect | target half-width | '
           + ' | '.join(f'{n} seeds' for n in range(2, MAX_SEEDS + 1)) + ' | seeds needed |',
           '|---|---|---:|---:|---:|' + '---:|' * (MAX_SEEDS - 1) + '---|']
  for row in table:
    needed = row.seeds or f'more than {MAX_SEEDS}: run {MAX_SEEDS}'
    lines.append(f'| {row.claim} | {row.statistic} | {row.estimate:.3g} | '
                 f'{row.minimum_effect:g} | {row.target:.3g} | ' +
                 ' | '.join(f'{h:.3g}' for h in row.half_widths.values()) + f' | {needed} |')
  return lines


def rung_change(test: claims.ClaimTest, rows, previous_rows, seeds) -> dict:
  """{statistic name: Interval} of each linear statistic of `test` on `rows` minus the
  same on `previous_rows` (another rung), both on `seeds`: how the effect moved between
  rungs. The two rungs see the same test images."""
  change = {}
  for statistic in test.statistics:
    if statistic.function is not None or statistic.denominator or statistic.role == REPORTED:
      continue
    now = [claims.cell_samples(rows, c, seeds)[0] for c in statistic.cells]
    before = [claims.cell_samples(previous_rows, c, seeds)[0] for c in statistic.cells]
    if any(p is None for p in now + before):
      continue
    weights = np.concatenate([statistic.weights, np.negative(statistic.weights)])
    change[statistic.name] = claims.statistics.linear(weights, now + before)
  return change
