"""The paper's claims: each decided by its primary test, with every other test secondary.

A claim's verdict is its primary test's (study/primary.py) on the confirmatory seeds;
the same test on the other (exploratory) seeds is shown beside it. Every other test of the
claim, at every arch, category and rain range the exploratory points allow, is secondary
(study/claims.py's tests on the exploratory seeds): reported, and counted as "k of m
agree" after Holm's correction over the claim's secondary tests (family-wise 5%); a test
with a point of one seed has no interval and is listed as not tested. Secondary tests
never change a verdict. Claim 4 (category complexity) has no primary test: its verdict
combines its pairwise tests.

Input rows: study/results.py's result_rows; `chosen` are those on the report's test rain.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import NamedTuple

from jaxderain.rain import RAIN_RANGES, TRAINING_RANGES, shifts
from jaxderain.study import claims, primary, statistics
from jaxderain.study.claims import FLAT_FROM, FLAT_RATIO
from jaxderain.study.results import Row, split_converged
from jaxderain.study.statistics import NOT_CONVERGED, NOT_RUN, Interval

MIN_LEVELS = 3  # values of N a curve's test (slope, collapse, flattening) needs; the
# flattening also needs N below and above claims.FLAT_FROM
FEW_BACKGROUNDS = 512  # claim 5: objectives with N up to this vs the largest N
# Claim 4's order, most complex first; equal ranks are not ordered.
COMPLEXITY_RANK = {'celeba': 0, 'div2k': 1, 'natural': 1, 'manga109': 2, 'urban100': 3}
DISTANCE_AXIS = 'angle'  # the shifted-rain axis of the distance claim
NATURAL_STAND_IN = (
    'The paper ranks DIV2K; `natural` stands in for it: with data_dir set, the folder '
    'DATA_DIR/backgrounds/natural (in ../shared/data: Set14 and CBSD68 without the Rain100L '
    'backgrounds, 58 photographs of about 480x320), otherwise the photographs embedded in '
    'scikit-image. Complexity is measured on 256 patches of 64x64 of the training split.')

CLAIMS = {
    1: 'Removal falls as N grows: the slope of net removal against log2 N is negative',
    2: 'The collapse of removal moves to larger N as the training rain range widens '
       '(small -> medium)',
    3: f'E_B falls with N and flattens by about N = {FLAT_FROM} (its change after '
       f'{FLAT_FROM} within +-{FLAT_RATIO} of its drop before)',
    4: 'Structural complexity: celeba > div2k/natural > manga109 > urban100',
    5: 'Table 2: few backgrounds beat many on net removal and lose on E_B',
    'distance': 'Beyond the training range, few backgrounds remove more of the rain than '
                'many',
}


def label(key) -> str:
  return '/'.join(str(k) for k in key)


def _levels(rows, keys=('arch', 'category', 'rain_range')) -> dict[tuple, list[int]]:
  """{key: ascending N} of the rows."""
  found = collections.defaultdict(set)
  for row in rows:
    found[row.key(keys)].add(row.num_patches)
  return {k: sorted(v) for k, v in sorted(found.items(), key=lambda kv: str(kv[0]))}


class Shifted(NamedTuple):
  """A row on a shifted-rain test set: the shifted parameter's value, its offset beyond
  the point's own training range (rain/shifts.py) and the set's rain name."""
  row: Row
  value: int
  offset: float
  rain: str


def shifted_rows(rows, axis: str) -> list[Shifted]:
  """The rows on the shifted-rain test sets of `axis`."""
  picked = []
  for row in rows:
    prefix = f'{row.category}_'
    rain = row.testset[len(prefix):] if row.testset.startswith(prefix) else ''
    parsed = shifts.parse(rain)
    if parsed and parsed[0] == axis and row.rain_range in TRAINING_RANGES:
      picked.append(Shifted(row, parsed[1], shifts.offset(
          axis, parsed[1], TRAINING_RANGES[row.rain_range]), rain))
  return picked


def secondary_tests(chosen, rows, test_rain: str) -> dict[object, list[claims.ClaimTest]]:
  """Every test the rows allow, by claim: claims 1, 2, 3 and 5 on `chosen` (rows on
  `test_rain`), the distance claim on the angle-shifted rains among `rows`."""
  rain = (test_rain,)
  tests = collections.defaultdict(list)
  for (arch, category, rain_range), ns in _levels(chosen).items():
    if len(ns) >= MIN_LEVELS:
      tests[1].append(claims.falls(arch, category, rain_range, ns, rain))
      if ns[0] < FLAT_FROM < ns[-1]:
        tests[3].append(claims.flattens(arch, category, rain_range, ns, rain))
  curves = _levels([r for r in chosen if r.arch == 'resnet'], ('category', 'rain_range'))
  for category in sorted({c for c, _ in curves}):
    present = [r for r in RAIN_RANGES if len(curves.get((category, r), [])) >= MIN_LEVELS]
    for narrow, wide in zip(present, present[1:]):
      tests[2].append(claims.collapse('resnet', category, narrow, wide,
                                      curves[(category, narrow)], curves[(category, wide)],
                                      rain))
  objectives = _levels(chosen, ('arch', 'category', 'rain_range', 'num_patches'))
  by_group = collections.defaultdict(list)
  for arch, category, rain_range, n in objectives:
    by_group[(arch, category)].append((n, rain_range))
  for (arch, category), table in sorted(by_group.items()):
    baseline = (max(n for n, _ in table), 'medium')
    if baseline[0] > FEW_BACKGROUNDS and baseline in table:
      for objective in sorted(o for o in table if o[0] <= FEW_BACKGROUNDS):
        tests[5].append(claims.tradeoff(arch, category, objective, baseline, rain))
  beyond = collections.defaultdict(set)
  shifted = shifted_rows(rows, DISTANCE_AXIS)
  for item in shifted:
    if item.offset > 0:
      beyond[item.row.key(('arch', 'category', 'rain_range'))].add(item.rain)
  levels = _levels([item.row for item in shifted])
  for key, sets in sorted(beyond.items()):
    ns = levels.get(key, [])
    if len(sets) >= 2 and len(ns) >= 2:
      ordered = sorted(sets, key=lambda s: shifts.parse(s)[1])
      tests['distance'].append(claims.distance(*key, ns[0], ns[-1], ordered))
  return tests


@dataclasses.dataclass
class Verdict:
  """A claim's verdict: its primary test on the confirmatory seeds (None for claim 4),
  the same on the exploratory seeds, and its secondary tests (`Outcome.agrees` set)."""
  claim: object
  status: str
  primary: claims.Outcome | None
  exploratory: claims.Outcome | None
  secondary: list[claims.Outcome]
  note: str = ''

  @property
  def text(self) -> str:
    return CLAIMS[self.claim]

  @property
  def tested(self) -> list[claims.Outcome]:
    return [o for o in self.secondary if o.has_interval]

  @property
  def agree(self) -> int:
    return sum(bool(o.agrees) for o in self.secondary)

  @property
  def not_tested(self) -> list[str]:
    return [o.label for o in self.secondary if not o.has_interval]

  def points_used(self) -> set[str]:
    return {p for o in [self.primary, self.exploratory, *self.secondary] if o
            for p in o.used}

  def as_dict(self) -> dict:
    outcome = lambda o: o.as_dict() if o else None
    return {'claim': self.claim, 'text': self.text, 'status': self.status,
            'primary': outcome(self.primary), 'exploratory': outcome(self.exploratory),
            'secondary': [o.as_dict() for o in self.secondary], 'agree': self.agree,
            'tested': len(self.tested), 'not_tested': self.not_tested, 'note': self.note}


def claim_complexity(stats: dict[str, dict]) -> Verdict:
  """Claim 4: each pair of ranked categories in COMPLEXITY_RANK's order; the difference of
  mean patch complexity with a normal 95% interval from the patches' standard errors."""
  ranked = sorted((c for c in stats if c in COMPLEXITY_RANK),
                  key=lambda c: (COMPLEXITY_RANK[c], c))
  tests = []
  for i, more in enumerate(ranked):
    for less in ranked[i + 1:]:
      if COMPLEXITY_RANK[more] == COMPLEXITY_RANK[less]:
        continue
      a, b = stats[more], stats[less]
      difference = a['mean'] - b['mean']
      half = 1.96 * math.hypot(a['std'] / math.sqrt(a['patches']),
                               b['std'] / math.sqrt(b['patches']))
      interval = Interval(difference, difference - half, difference + half,
                          a['patches'] + b['patches'] - 2)
      tests.append(claims.Outcome(claims.ClaimTest(4, f'{more} > {less}', {}, ()),
                                  statistics.direction(interval, +1),
                                  {'difference': interval}))
  note = NATURAL_STAND_IN if len(ranked) > 1 else (
      f'Needs 2 measured categories among {", ".join(COMPLEXITY_RANK)}. ' + NATURAL_STAND_IN)
  return Verdict(4, statistics.combine([t.status for t in tests]), None, None, tests, note)


def _primary(test: claims.ClaimTest, rows) -> claims.Outcome:
  """The primary test on the confirmatory seeds of the converged rows; NOT CONVERGED
  when it cannot run without the points that failed the gate but could with them."""
  outcome = claims.run(test, rows, primary.CONFIRMATORY_SEEDS)
  if outcome.status == NOT_RUN:
    everything = [dataclasses.replace(r, converged=True) for r in rows]
    if claims.run(test, everything, primary.CONFIRMATORY_SEEDS).status != NOT_RUN:
      outcome.status = NOT_CONVERGED
  return outcome


def claim_verdicts(chosen: list[Row], stats: dict, rows: list[Row],
                   test_rain: str) -> list[Verdict]:
  """Claims 1, 2, 3, 4, 5 and distance, in that order: each one's primary test (on every
  row: it names its own test rain) on the confirmatory seeds, the same on the exploratory
  seeds, and its secondary tests on the exploratory seeds (claim 4: category complexity
  `stats`)."""
  exploratory = primary.exploratory_seeds(rows)
  kept_chosen, _ = split_converged([r for r in chosen if r.seed in exploratory])
  kept_rows, _ = split_converged([r for r in rows if r.seed in exploratory])
  secondary = secondary_tests(kept_chosen, kept_rows, test_rain)
  primaries = {t.claim: t for t in primary.TESTS}
  verdicts = []
  for claim in (1, 2, 3, 4, 5, 'distance'):
    if claim == 4:
      verdicts.append(claim_complexity(stats))
      continue
    test = primaries[claim]
    confirmatory = _primary(test, rows)
    others = [claims.run(t, kept_rows, exploratory) for t in secondary.get(claim, ())
              if t.cells != test.cells]
    tested = [o for o in others if o.has_interval]
    for outcome, agrees in zip(tested, statistics.holm([o.p_agree for o in tested])):
      outcome.agrees = agrees
    verdicts.append(Verdict(claim, confirmatory.status, confirmatory,
                            claims.run(test, rows, exploratory), others))
  return verdicts
