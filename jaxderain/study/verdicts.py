"""The paper's claims as tests with intervals, and how unseen test rain must be.

Each claim is one or more tests; a test is a statistic of per-point seed means with a
95% interval from the seed-noise bootstrap (study/statistics.py; the noise of a metric is
pooled over every point of one arch and category on the same test set). A test PASSes
when its interval lies on the paper's side of "no effect", FAILs when it lies on the
other side, and is INCONCLUSIVE otherwise; a claim FAILs if any of its tests fails and
PASSes if all pass. Removal is measured by `net_removal` (eval/metrics.py), which never
rewards damage; the paper's E_R is reported beside it.

Input rows: one per point and test set, with 'point', 'arch', 'category', 'rain_range',
'num_patches', 'seed', 'testset', 'converged' and the metrics (study/results.py's
result_rows).
"""

from __future__ import annotations

import collections
import math

import numpy as np

from jaxderain.rain import RAIN_RANGES, TRAINING_RANGES, shifts
from jaxderain.study import statistics
from jaxderain.study.results import split_converged
from jaxderain.study.statistics import FAIL, INCONCLUSIVE, NOT_RUN, PASS, Interval

REMOVAL = 'net_removal'  # the removal measure verdicts use
MIN_LEVELS = 3  # values of N a trend (slope, collapse point) needs
FEW_BACKGROUNDS = 512  # claim 5: objectives with N up to this vs the largest N
FLAT_FROM = 256  # claim 3: E_B flattens by about this N
FLAT_RATIO = 0.25  # claim 3: change after FLAT_FROM below this share of the change before
# Claim 4's order, most complex first; equal ranks are not ordered.
COMPLEXITY_RANK = {'celeba': 0, 'div2k': 1, 'natural': 1, 'manga109': 2, 'urban100': 3}
DISTANCE_AXIS = 'angle'  # the shifted-rain axis the distance statement tests
NATURAL_STAND_IN = (
    'The paper ranks DIV2K; `natural` stands in for it: with data_dir set, the folder '
    'DATA_DIR/backgrounds/natural (in ../shared/data: Set14 and CBSD68 without the Rain100L '
    'backgrounds, 58 photographs of about 480x320), otherwise the photographs embedded in '
    'scikit-image. Complexity is measured on 256 patches of 64x64 of the training split.')

CLAIMS = {
    1: 'Removal falls as N grows: the slope of net removal against log2 N is negative, per '
       'arch, category and rain range',
    2: 'The collapse point of removal moves to larger N as the rain range widens: '
       'small < medium < large (resnet, per category)',
    3: f'E_B falls with N (slope against log2 N < 0) and flattens by about N = {FLAT_FROM} '
       f'(change from {FLAT_FROM} to the largest N < {FLAT_RATIO} of the change from the '
       f'smallest N to {FLAT_FROM})',
    4: 'Structural complexity: celeba > div2k/natural > manga109 > urban100',
    5: f'Table 2: objectives with N <= {FEW_BACKGROUNDS} beat the largest-N baseline '
       '(medium rain) on net removal and lose on E_B, per arch and category',
}
DISTANCE_CLAIM = ('The gap in net removal between the fewest and the most backgrounds grows '
                  'as the test rain moves beyond the training range (slope of the gap '
                  'against the angle offset > 0)')
# The group each claim's tests are read by first: resnet on natural backgrounds and medium
# rain, the group every part of the study shares (claim 4 compares categories: it has none).
REFERENCE_GROUP = {'arch': 'resnet', 'category': 'natural', 'rain_range': 'medium'}


def label(key) -> str:
  return '/'.join(str(k) for k in key)


def group(arch, category, rain_range=None) -> dict:
  """A test's group: what it holds fixed (a claim 2 test spans rain ranges)."""
  return {'arch': arch, 'category': category,
          **({'rain_range': rain_range} if rain_range else {})}


def seed_values(rows, metric, keys=('arch', 'category', 'rain_range')):
  """{key: {N: [(value, point name)] over seeds}} for the finite values of `metric`."""
  grouped = collections.defaultdict(lambda: collections.defaultdict(list))
  for row in rows:
    value = row.get(metric)
    if value is not None and math.isfinite(value):
      grouped[tuple(row[k] for k in keys)][row['num_patches']].append((value, row['point']))
  return {key: dict(sorted(by_n.items())) for key, by_n in sorted(grouped.items())}


def noise_by_group(rows, metric) -> dict[tuple, tuple[float, int]]:
  """{(arch, category): (s^2, df)}: the metric's seed noise pooled over the group."""
  points = collections.defaultdict(list)
  for key, by_n in seed_values(rows, metric, ('arch', 'category', 'rain_range')).items():
    points[key[:2]] += [[v for v, _ in seeds] for seeds in by_n.values()]
  return {group: statistics.pooled_noise(values) for group, values in points.items()}


def _values(seeds) -> list[float]:
  return [v for v, _ in seeds]


def _names(*seed_lists) -> list[str]:
  return sorted({name for seeds in seed_lists for _, name in seeds})


def _test(test_label, statistic_text, interval: Interval, status, points, **extra):
  return {'label': test_label, 'statistic': statistic_text, **interval.as_dict(),
          'status': status, 'points': points, **extra}


def verdict(claim, tests, scope_points, left_out_reason, excluded=()) -> dict:
  """A claim's verdict from its tests. scope_points: every point the claim could use;
  those in no test are left out with `left_out_reason` (or as not converged)."""
  used = {p for t in tests for p in t['points']}
  left_out = {p: 'not converged' for p in excluded}
  left_out.update({p: left_out_reason for p in scope_points if p not in used
                   and p not in left_out})
  status = statistics.combine([t['status'] for t in tests])
  statistic = '; '.join(f'{t["label"]}: {t["statistic"]} **{t["status"]}**' for t in tests)
  return {'claim': claim, 'text': CLAIMS.get(claim, DISTANCE_CLAIM), 'status': status,
          'statistic': statistic or 'no test could be computed', 'tests': tests,
          'points_used': sorted(used), 'left_out': dict(sorted(left_out.items()))}


def reference_test(claim_verdict: dict) -> dict | None:
  """The claim's first test whose group agrees with REFERENCE_GROUP, else its first test
  whose status is the claim's; None when it has no test."""
  tests = claim_verdict['tests']
  return next((t for t in tests if 'group' in t and all(
      REFERENCE_GROUP[k] == v for k, v in t['group'].items())),
              next((t for t in tests if t['status'] == claim_verdict['status']), None))


def _scope(rows, predicate=lambda row: True) -> list[str]:
  return sorted({r['point'] for r in rows if predicate(r)})


def claim_falls(rows, excluded=()) -> dict:
  """Claim 1: per curve, the slope of net removal against log2 N is negative; the
  paper's E_R slope is reported beside it."""
  noise = {m: noise_by_group(rows, m) for m in (REMOVAL, 'E_R')}
  errors = seed_values(rows, 'E_R')
  tests = []
  for key, by_n in seed_values(rows, REMOVAL).items():
    if len(by_n) < MIN_LEVELS:
      continue
    x = np.log2(list(by_n))
    removal = statistics.bootstrap(statistics.slope(x), [_values(s) for s in by_n.values()],
                                   noise[REMOVAL].get(key[:2]))
    er = statistics.bootstrap(statistics.slope(x), [_values(s) for s in errors[key].values()],
                              noise['E_R'].get(key[:2]))
    tests.append(_test(label(key), f'net removal per doubling of N {removal.text()} '
                       f'(E_R {er.text()})', removal, statistics.direction(removal, -1),
                       _names(*by_n.values()), group=group(*key), E_R=er.as_dict()))
  return verdict(1, tests, _scope(rows), f'its curve has fewer than {MIN_LEVELS} values of N',
                 excluded)


def claim_collapse(rows, excluded=()) -> dict:
  """Claim 2: per category, resnet's collapse point (statistics.collapse_log2) grows
  from each present rain range to the next wider one."""
  resnet = [r for r in rows if r['arch'] == 'resnet']
  curves = seed_values(resnet, REMOVAL, ('category', 'rain_range'))
  noise = noise_by_group(resnet, REMOVAL)
  tests = []
  for category in sorted({c for c, _ in curves}):
    present = [r for r in RAIN_RANGES if len(curves.get((category, r), {})) >= MIN_LEVELS]
    for narrow, wide in zip(present, present[1:]):
      first, second = curves[(category, narrow)], curves[(category, wide)]
      at_first = statistics.collapse_log2(np.log2(list(first)))
      at_second = statistics.collapse_log2(np.log2(list(second)))
      split = len(first)
      statistic = lambda m, a=at_first, b=at_second, k=split: b(m[..., k:]) - a(m[..., :k])
      groups = [_values(s) for s in first.values()] + [_values(s) for s in second.values()]
      interval = statistics.bootstrap(statistic, groups, noise.get(('resnet', category)))
      narrow_n = 2 ** float(at_first(np.array([np.mean(_values(s)) for s in first.values()])))
      wide_n = 2 ** float(at_second(np.array([np.mean(_values(s)) for s in second.values()])))
      tests.append(_test(
          f'resnet/{category}: {narrow} -> {wide}',
          f'collapse N {narrow_n:.0f} -> {wide_n:.0f}, shift in log2 N {interval.text()}',
          interval, statistics.direction(interval, +1),
          _names(*first.values(), *second.values()), group=group('resnet', category)))
  return verdict(2, tests, _scope(resnet), f'needs resnet curves of two rain ranges with '
                 f'{MIN_LEVELS} values of N in one category', excluded)


def _flattening(x):
  """A statistic: |change from FLAT_FROM to the largest N| / (drop from the smallest N to
  FLAT_FROM), E_B at FLAT_FROM interpolated in log2 N; inf without an early drop."""
  at = math.log2(FLAT_FROM)
  upper = int(np.searchsorted(x, at))
  weight = (at - x[upper - 1]) / (x[upper] - x[upper - 1])

  def statistic(means):
    means = np.asarray(means, float)
    at_flat = means[..., upper - 1] * (1 - weight) + means[..., upper] * weight
    early, late = means[..., 0] - at_flat, at_flat - means[..., -1]
    with np.errstate(divide='ignore', invalid='ignore'):
      return np.where(early > 0, np.abs(late) / early, np.inf)

  return statistic


def claim_flattens(rows, excluded=()) -> dict:
  """Claim 3: per curve, E_B's slope against log2 N is negative and its change after
  FLAT_FROM is under FLAT_RATIO of its drop before."""
  noise = noise_by_group(rows, 'E_B')
  tests = []
  for key, by_n in seed_values(rows, 'E_B').items():
    ns = list(by_n)
    if len(ns) < MIN_LEVELS or not ns[0] < FLAT_FROM < ns[-1]:
      continue
    x, groups = np.log2(ns), [_values(s) for s in by_n.values()]
    falls = statistics.bootstrap(statistics.slope(x), groups, noise.get(key[:2]))
    ratio = statistics.bootstrap(_flattening(x), groups, noise.get(key[:2]))
    fall_status = statistics.direction(falls, -1)
    if fall_status == FAIL or ratio.low > FLAT_RATIO:
      status = FAIL
    elif fall_status == PASS and ratio.high < FLAT_RATIO:
      status = PASS
    else:
      status = INCONCLUSIVE
    tests.append(_test(label(key), f'E_B per doubling of N {falls.text()}, change after '
                       f'{FLAT_FROM} / before {ratio.text(2)}', falls, status,
                       _names(*by_n.values()), group=group(*key),
                       flattening=ratio.as_dict()))
  return verdict(3, tests, _scope(rows), f'its curve needs {MIN_LEVELS} values of N on both '
                 f'sides of {FLAT_FROM}', excluded)


def claim_complexity(stats: dict[str, dict]) -> dict:
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
      tests.append(_test(f'{more} > {less}', f'difference {interval.text()}', interval,
                         statistics.direction(interval, +1), []))
  result = verdict(4, tests, [], '')
  result['note'] = NATURAL_STAND_IN
  if len(ranked) < 2:
    result['statistic'] = f'needs 2 measured categories among {", ".join(COMPLEXITY_RANK)}'
  return result


def claim_tradeoff(rows, excluded=()) -> dict:
  """Claim 5: per arch and category, every objective (N <= FEW_BACKGROUNDS, any rain
  range) minus the baseline (the largest N, medium rain): net removal higher and E_B
  higher, each difference's interval excluding 0."""
  metrics = (REMOVAL, 'E_B')
  values = {m: seed_values(rows, m, ('arch', 'category', 'rain_range', 'num_patches'))
            for m in metrics}
  noise = {m: noise_by_group(rows, m) for m in metrics}
  objectives = collections.defaultdict(dict)  # (arch, category): {(N, range): {metric: seeds}}
  for (arch, category, rain_range, n), by_n in values[REMOVAL].items():
    eb = values['E_B'].get((arch, category, rain_range, n))
    if eb:
      objectives[(arch, category)][(n, rain_range)] = {REMOVAL: by_n[n], 'E_B': eb[n]}
  tests = []
  for (arch, category), table in sorted(objectives.items()):
    largest = max(n for n, _ in table)
    baseline = (largest, 'medium')
    if largest <= FEW_BACKGROUNDS or baseline not in table:
      continue
    for objective in sorted(o for o in table if o[0] <= FEW_BACKGROUNDS):
      intervals = {m: statistics.bootstrap(
          statistics.difference(0, 1),
          [_values(table[objective][m]), _values(table[baseline][m])],
          noise[m].get((arch, category))) for m in metrics}
      beats = statistics.direction(intervals[REMOVAL], +1)
      loses = statistics.direction(intervals['E_B'], +1)
      tests.append(_test(
          f'{arch}/{category}: N={objective[0]} {objective[1]} vs N={largest} medium',
          f'net removal {intervals[REMOVAL].text()}, E_B {intervals["E_B"].text()}',
          intervals[REMOVAL], statistics.combine([beats, loses]),
          _names(table[objective][REMOVAL], table[baseline][REMOVAL]),
          group=group(arch, category, objective[1]), E_B=intervals['E_B'].as_dict()))
  return verdict(5, tests, _scope(rows), f'N > {FEW_BACKGROUNDS} and not a baseline, or no '
                 'baseline (largest N > 512, medium rain) in its arch and category', excluded)


def shifted_rows(rows, axis: str) -> list[dict]:
  """Rows of the shifted-rain test sets of `axis`, with 'value' and 'offset' (beyond the
  point's own training range, rain/shifts.py) added."""
  picked = []
  for row in rows:
    prefix = f'{row["category"]}_'
    parsed = shifts.parse(row['testset'][len(prefix):]) if row['testset'].startswith(
        prefix) else None
    if parsed and parsed[0] == axis and row['rain_range'] in TRAINING_RANGES:
      value = parsed[1]
      picked.append({**row, 'value': value, 'offset': shifts.offset(
          axis, value, TRAINING_RANGES[row['rain_range']])})
  return picked


def _per_model(rows, field, beyond):
  """{(arch, category, range, N): {seed point: {offset: net removal}}} for offsets >= 0."""
  models = collections.defaultdict(lambda: collections.defaultdict(dict))
  for row in rows:
    if row['offset'] >= 0 and row[field] is not None and math.isfinite(row[field]):
      key = (row['arch'], row['category'], row['rain_range'], row['num_patches'])
      models[key][row['point']][row['offset']] = row[field]
  return {k: {p: v for p, v in m.items() if len(v) == len(beyond[k[:3]])}
          for k, m in models.items() if k[:3] in beyond}


def distance_verdict(rows, excluded=(), axis: str = DISTANCE_AXIS) -> dict:
  """The distance statement: per arch, category and training range, the slope of each
  model's net removal against the offset beyond its training range (offsets >= 0), and
  the difference of that slope between the fewest and the most backgrounds (> 0: the gap
  grows). Also the gap at every offset (inside the range too) with its interval, and
  where the curves separate: the smallest offset whose gap interval lies above 0. The
  noise of slopes and of each set's values is pooled per arch and category."""
  shifted = shifted_rows(rows, axis)
  beyond = collections.defaultdict(set)
  for row in shifted:
    if row['offset'] >= 0:
      beyond[(row['arch'], row['category'], row['rain_range'])].add(row['offset'])
  beyond = {k: sorted(v) for k, v in beyond.items() if len(v) >= MIN_LEVELS}
  models = _per_model(shifted, REMOVAL, beyond)
  slopes = {}  # (arch, category, range, N): [(slope, point)]
  for key, by_point in models.items():
    offsets = beyond[key[:3]]
    slope = statistics.slope(offsets)
    slopes[key] = [(float(slope(np.array([v[o] for o in offsets]))), p)
                   for p, v in sorted(by_point.items())]
  slope_noise = collections.defaultdict(list)
  for key, seeds in slopes.items():
    slope_noise[key[:2]].append(_values(seeds))
  gap_noise = {}  # (arch, category, offset): pooled noise of that set's values
  at_offset = seed_values(shifted, REMOVAL, ('arch', 'category', 'rain_range', 'offset'))
  for (arch, category, _, offset), by_n in at_offset.items():
    gap_noise.setdefault((arch, category, offset), []).extend(
        _values(s) for s in by_n.values())
  tests = []
  for key in sorted(beyond):
    ns = sorted(n for k, n in ((k[:3], k[3]) for k in slopes) if k == key)
    if len(ns) < 2:
      continue
    few, many = slopes[(*key, ns[0])], slopes[(*key, ns[-1])]
    interval = statistics.bootstrap(statistics.difference(0, 1),
                                    [_values(few), _values(many)],
                                    statistics.pooled_noise(slope_noise[key[:2]]))
    gaps = {}  # offset: the gap's interval there
    for offset in sorted({r['offset'] for r in shifted if tuple(
        r[k] for k in ('arch', 'category', 'rain_range')) == key}):
      by_n = at_offset.get((*key, offset), {})
      if ns[0] in by_n and ns[-1] in by_n:
        gaps[offset] = statistics.bootstrap(
            statistics.difference(0, 1), [_values(by_n[ns[0]]), _values(by_n[ns[-1]])],
            statistics.pooled_noise(gap_noise[(*key[:2], offset)]))
    separation = next((o for o, gap in gaps.items()
                       if statistics.direction(gap, +1) == PASS), None)
    where = ('never separate' if separation is None
             else f'separate from offset {separation:g}')
    tests.append(_test(
        f'{label(key)}: N={ns[0]} vs N={ns[-1]}',
        f'gap slope per unit of {axis} offset {interval.text()}; curves {where}',
        interval, statistics.direction(interval, +1), _names(few, many),
        group=group(*key), separates_at=separation, offsets=beyond[key],
        gaps={f'{o:g}': [g.estimate, g.low, g.high] for o, g in gaps.items()}))
  return verdict('distance', tests, _scope(shifted), f'needs {MIN_LEVELS} {axis} offsets '
                 'at or beyond its training range and two values of N', excluded)


def _gated(claim, rows) -> dict:
  """`claim` on the converged points of `rows`; NOT CONVERGED when it cannot run without
  the not-converged points but could with them."""
  kept, excluded = split_converged(rows)
  result = claim(kept, excluded)
  if result['status'] == NOT_RUN and excluded and claim(rows)['tests']:
    result['status'] = statistics.NOT_CONVERGED
  return result


def claim_verdicts(chosen: list[dict], stats: dict, rows: list[dict]) -> list[dict]:
  """Claims 1-5 and the distance statement, in that order: claims 1, 2, 3 and 5 on the
  chosen test rain's rows, claim 4 on category complexity `stats`, the distance statement
  on the shifted rains among `rows`; each on converged points (`_gated`)."""
  return [_gated(claim_falls, chosen), _gated(claim_collapse, chosen),
          _gated(claim_flattens, chosen), claim_complexity(stats),
          _gated(claim_tradeoff, chosen), _gated(distance_verdict, rows)]
