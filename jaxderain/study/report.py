"""The study's report: results table, figures, Table 2 and verdicts on the paper's claims.

Reads a sweep's output folder OUT (OUT/points/<name>/config.json and
OUT/points/<name>/eval/<testset>.json) and writes OUT/report/: results.csv and
results.json (one row per point and test set), verdicts.json, the figures as PNG and
report.md, which shows them all.

  python -m jaxderain.study report --out=OUT      # calls cli(OUT)

Choices:
- Metrics are a run's `recent` means (the last few checkpoints' evaluations) when its JSON
  has them, else the final checkpoint's values.
- One kind of test rain for every point: Rain100L's layers on held-out backgrounds
  (`<category>_rain100L`) when every evaluated point has them, else the built-in unseen
  rain (`<category>_unseen`), so that all curves compare the same rain.
- A point whose `<category>_train` PSNR does not beat the identity's failed the
  convergence gate: it stays in the table, is listed as NOT CONVERGED and is left out of
  the figures, Table 2 and the verdicts. A point without that set is used and listed as
  unchecked.
- Curves are means over seeds per (arch, category, rain range, N), with min-max bars;
  a trend needs at least MIN_LEVELS values of N. Figures 4, 6a, 7 and 10 show one rain
  range (medium when present).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import logging
import math
import pathlib
import shutil
import sys
from typing import NamedTuple

import numpy as np
import scipy.stats
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxderain.data.backgrounds import background_set, load_category
from jaxderain.study.complexity import complexity

FIELDS = ('point', 'arch', 'category', 'rain_range', 'num_patches', 'seed', 'scale',
          'testset', 'step', 'E_R', 'E_B', 'psnr', 'ssim', 'removal_share',
          'identity_psnr', 'identity_E_B', 'perfect_E_R', 'converged')
METRICS = ('E_R', 'E_B', 'psnr', 'ssim', 'removal_share')
RAIN_RANGES = ('small', 'medium', 'large')
TEST_RAINS = ('rain100L', 'unseen')
PASS, FAIL, NOT_RUN = 'PASS', 'FAIL', 'NOT RUN'
MIN_LEVELS = 3  # values of N a trend (Spearman rho, collapse point) needs
FEW_BACKGROUNDS = 512  # Table 2: objectives with N up to this vs the largest N
FLAT_FROM = 256  # claim 3: E_B flattens by about this N
# Claim 4's order, most complex first; equal ranks are not ordered.
COMPLEXITY_RANK = {'celeba': 0, 'div2k': 1, 'natural': 1, 'manga109': 2, 'urban100': 3}
COMPLEXITY_SAMPLE = dict(num_patches=256, patch_size=64, seed=0)
DEFAULT_UNITS = 'E_R, E_B and PSNR on the 0-255 scale'

CLAIMS = {
    1: 'E_R and removal share fall as N grows (Spearman rho of N and each < 0, per '
       'arch, category and rain range)',
    2: 'The collapse point of the removal share moves to larger N as the rain range '
       'widens: small < medium < large (resnet)',
    3: 'E_B falls with N (rho < 0) and flattens by about N = 256 (change from 256 to the '
       'largest N < 1/4 of the change from the smallest N to 256)',
    4: 'Structural complexity: celeba > div2k/natural > manga109 > urban100',
    5: 'Table 2: objectives (N, rain range) with N <= 512 beat the largest-N baseline on '
       'E_R and lose on E_B, per arch',
}
FIGURES = {
    '4': ('figure4_er_vs_n.png', 'Figure 4: E_R vs N per category, one panel per arch'),
    '5': ('figure5_er_vs_n_by_range.png', 'Figure 5: E_R vs N per rain range (resnet)'),
    '6a': ('figure6a_er_normalised.png',
           'Figure 6a: E_R normalised to [0, 1] within each category'),
    '6b': ('figure6b_complexity.png', 'Figure 6b: structural complexity per category'),
    '7': ('figure7_eb_vs_n.png', 'Figure 7: E_B vs N per category, one panel per arch'),
    '10': ('figure10_cross_category.png',
           'Figure 10: models trained on each category, tested on natural'),
}


def short_category(category: str) -> str:
  """The name a category's test sets carry: the last part of a folder path."""
  return str(category).rstrip('/').split('/')[-1]


@dataclasses.dataclass
class Point:
  """One grid point's workdir: its config and its eval JSONs by test set name."""
  name: str
  path: pathlib.Path
  config: dict
  evals: dict[str, dict]
  seconds: float | None = None  # training + eval wall time, from the sweep's done.json

  @property
  def category(self) -> str:
    return short_category(self.config.get('category', ''))

  @property
  def converged(self) -> bool | None:
    """Whether the train set's PSNR beats the identity's; None without that set."""
    result = self.evals.get(f'{self.category}_train')
    if result is None:
      return None
    psnr, identity_psnr = gate_psnrs(result)
    return psnr > identity_psnr


def gate_psnrs(result: dict) -> tuple[float, float]:
  """(model, identity) mean PSNR on a train set for the convergence gate. Where a fresh
  rain draw left an image without rain, the identity's PSNR there (and so its mean) is
  infinite; the gate then compares the last checkpoint over the images that have rain."""
  identity = result['reference']['identity']['psnr']
  rows = [r for r in result.get('per_image', []) if math.isfinite(r['identity_psnr'])]
  if math.isfinite(identity) or not rows:
    return _metrics(result)['psnr'], identity
  return (float(np.mean([r['psnr'] for r in rows])),
          float(np.mean([r['identity_psnr'] for r in rows])))


class Level(NamedTuple):
  """A metric at one N, over seeds."""
  n: int
  mean: float
  low: float
  high: float
  seeds: int


def _read_json(path: pathlib.Path):
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as error:  # e.g. a file the sweep is still writing
    raise ValueError(f'unreadable {path.parent.name}/{path.name} ({error})') from None


def load_points(out_dir) -> tuple[list[Point], list[dict]]:
  """Evaluated points of OUT/points, and the others as {'point', 'reason'}."""
  folder = pathlib.Path(out_dir) / 'points'
  if not folder.is_dir():
    raise FileNotFoundError(f'{folder} does not exist: pass the --out folder of a study '
                            'sweep (it holds points/<name>/config.json).')
  points, not_run = [], []
  for path in sorted(p for p in folder.iterdir() if p.is_dir()):
    if not (path / 'config.json').is_file():
      not_run.append({'point': path.name, 'reason': 'no config.json'})
      continue
    try:
      config = _read_json(path / 'config.json')
      evals = {f.stem: _read_json(f) for f in sorted((path / 'eval').glob('*.json'))}
    except ValueError as error:
      not_run.append({'point': path.name, 'reason': str(error)})
      continue
    done = path / 'done.json'
    seconds = _read_json(done).get('seconds') if done.is_file() else None
    if evals:
      points.append(Point(path.name, path, config, evals, seconds))
    else:
      not_run.append({'point': path.name, 'reason': 'no eval results'})
  return points, not_run


def _metrics(result: dict) -> dict:
  """The metrics of one eval JSON: its `recent` means when present."""
  recent = result.get('recent') or {}
  return {k: recent.get(k, result.get(k)) for k in METRICS}


def result_rows(points: list[Point]) -> list[dict]:
  """One row (FIELDS) per point and test set."""
  rows = []
  for point in points:
    config, converged = point.config, point.converged
    for testset, result in sorted(point.evals.items()):
      reference = result.get('reference', {})
      rows.append({
          'point': point.name, 'arch': config.get('arch'), 'category': point.category,
          'rain_range': config.get('rain_range'), 'num_patches': config.get('num_patches'),
          'seed': config.get('seed'), 'scale': config.get('scale'), 'testset': testset,
          'step': result.get('step'), **_metrics(result),
          'identity_psnr': reference.get('identity', {}).get('psnr'),
          'identity_E_B': reference.get('identity', {}).get('E_B'),
          'perfect_E_R': reference.get('perfect', {}).get('E_R'),
          'converged': converged})
  return rows


def choose_test_rain(points: list[Point]) -> str:
  """'rain100L' when every point has `<category>_rain100L`, else 'unseen'."""
  if points and all(f'{p.category}_rain100L' in p.evals for p in points):
    return 'rain100L'
  return 'unseen'


def spearman(x, y) -> float:
  """Spearman's rank correlation; NaN when either side is constant or too short."""
  x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
  if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
    return math.nan
  return float(scipy.stats.spearmanr(x, y).statistic)


def collapse_point(ns, shares) -> int | None:
  """The largest N up to which the removal share stays above the midpoint of its values
  at the smallest and largest N; None if it starts at or below it. Ns ascending."""
  midpoint = (shares[0] + shares[-1]) / 2
  collapse = None
  for n, share in zip(ns, shares):
    if share <= midpoint:
      break
    collapse = n
  return collapse


def curves(rows: list[dict], metric: str, keys=('arch', 'category', 'rain_range')):
  """{key values: [Level] by ascending N}: the metric's seed statistics per group."""
  values = collections.defaultdict(lambda: collections.defaultdict(list))
  for row in rows:
    value = row[metric]
    if value is not None and math.isfinite(value):
      values[tuple(row[k] for k in keys)][row['num_patches']].append(value)
  return {key: [Level(n, float(np.mean(v)), min(v), max(v), len(v))
                for n, v in sorted(by_n.items())]
          for key, by_n in sorted(values.items())}


def _partition(rows):
  """(rows of points that passed or lack the gate, sorted names of those that failed)."""
  kept = [r for r in rows if r['converged'] is not False]
  return kept, sorted({r['point'] for r in rows if r['converged'] is False})


def _verdict(claim, status, statistic, values, excluded=()):
  return {'claim': claim, 'text': CLAIMS[claim], 'status': status, 'statistic': statistic,
          'values': values, 'not_converged': list(excluded)}


def _not_run(claim, needs, excluded):
  note = f'; {len(excluded)} not converged' if excluded else ''
  return _verdict(claim, NOT_RUN, f'needs {needs}{note}', {}, excluded)


def _label(key) -> str:
  return '/'.join(str(k) for k in key)


def claim_falls(rows: list[dict]) -> dict:
  """Claim 1: rho(N, E_R) and rho(N, removal share) over seed means, all negative."""
  kept, excluded = _partition(rows)
  errors, shares = curves(kept, 'E_R'), curves(kept, 'removal_share')
  values = {}
  for key, levels in errors.items():
    share_levels = shares.get(key, [])
    if len(levels) >= MIN_LEVELS and len(share_levels) >= MIN_LEVELS:
      values[_label(key)] = {
          'rho_E_R': spearman([l.n for l in levels], [l.mean for l in levels]),
          'rho_removal_share': spearman([l.n for l in share_levels],
                                        [l.mean for l in share_levels])}
  if not values:
    return _not_run(1, f'{MIN_LEVELS} values of N for some arch/category/range', excluded)
  passed = all(rho < 0 for rhos in values.values() for rho in rhos.values())
  statistic = '; '.join(f'{k}: rho(E_R) {v["rho_E_R"]:.2f}, rho(share) '
                        f'{v["rho_removal_share"]:.2f}' for k, v in values.items())
  return _verdict(1, PASS if passed else FAIL, statistic, values, excluded)


def claim_collapse(rows: list[dict]) -> dict:
  """Claim 2: per category, resnet collapse points small < medium < large."""
  kept, excluded = _partition([r for r in rows if r['arch'] == 'resnet'])
  shares = curves(kept, 'removal_share', keys=('category', 'rain_range'))
  values = {}
  for category in sorted({c for c, _ in shares}):
    ranges = [shares.get((category, r), []) for r in RAIN_RANGES]
    if all(len(levels) >= MIN_LEVELS for levels in ranges):
      values[category] = {
          r: collapse_point([l.n for l in levels], [l.mean for l in levels])
          for r, levels in zip(RAIN_RANGES, ranges)}
  if not values:
    return _not_run(2, f'resnet points of all three rain ranges with {MIN_LEVELS} '
                    'values of N for one category', excluded)
  passed = all(None not in c.values() and c['small'] < c['medium'] < c['large']
               for c in values.values())
  statistic = '; '.join(f'{k}: collapse N small {c["small"]}, medium {c["medium"]}, '
                        f'large {c["large"]}' for k, c in values.items())
  return _verdict(2, PASS if passed else FAIL, statistic, values, excluded)


def claim_flattens(rows: list[dict]) -> dict:
  """Claim 3: rho(N, E_B) < 0 and |E_B(256) - E_B(N max)| < (E_B(N min) - E_B(256)) / 4.

  E_B(256) is interpolated linearly in log2 N when 256 is not on the grid."""
  kept, excluded = _partition(rows)
  values = {}
  for key, levels in curves(kept, 'E_B').items():
    ns, means = [l.n for l in levels], [l.mean for l in levels]
    if len(levels) < MIN_LEVELS or not ns[0] < FLAT_FROM < ns[-1]:
      continue
    at_flat = float(np.interp(math.log2(FLAT_FROM), np.log2(ns), means))
    early, late = means[0] - at_flat, at_flat - means[-1]
    values[_label(key)] = {
        'rho_E_B': spearman(ns, means), f'E_B_at_{FLAT_FROM}': at_flat,
        'early_drop': early, 'late_change': late,
        'late_over_early': abs(late) / early if early > 0 else math.nan}
  if not values:
    return _not_run(3, f'{MIN_LEVELS} values of N on both sides of {FLAT_FROM} for some '
                    'arch/category/range', excluded)
  passed = all(v['rho_E_B'] < 0 and v['late_over_early'] < 0.25 for v in values.values())
  statistic = '; '.join(f'{k}: rho(E_B) {v["rho_E_B"]:.2f}, |change after {FLAT_FROM}| / '
                        f'change before {v["late_over_early"]:.2f}'
                        for k, v in values.items())
  return _verdict(3, PASS if passed else FAIL, statistic, values, excluded)


def claim_complexity(stats: dict[str, dict]) -> dict:
  """Claim 4: every pair of ranked categories present is in COMPLEXITY_RANK's order."""
  ranked = sorted((c for c in stats if c in COMPLEXITY_RANK),
                  key=lambda c: (COMPLEXITY_RANK[c], c))
  if len(ranked) < 2:
    return _not_run(4, f'2 measured categories among {", ".join(COMPLEXITY_RANK)}', ())
  passed = all(stats[a]['mean'] > stats[b]['mean'] for a in ranked for b in ranked
               if COMPLEXITY_RANK[a] < COMPLEXITY_RANK[b])
  values = {c: stats[c]['mean'] for c in ranked}
  statistic = ', '.join(f'{c} {m:.4g}' for c, m in values.items()) + ' (mean complexity)'
  return _verdict(4, PASS if passed else FAIL, statistic, values)


def claim_tradeoff(rows: list[dict]) -> dict:
  """Claim 5: per arch, every objective (N, rain range) with N <= 512 has a higher E_R and
  a higher E_B than the baseline of its category: the largest N (> 512), medium range
  when there are several."""
  kept, excluded = _partition(rows)
  backgrounds = {k: {l.n: l.mean for l in v} for k, v in curves(kept, 'E_B').items()}
  objectives = collections.defaultdict(dict)  # (arch, category): {(N, range): (E_R, E_B)}
  for (arch, category, rain_range), levels in curves(kept, 'E_R').items():
    for level in levels:
      if level.n in backgrounds[(arch, category, rain_range)]:
        objectives[(arch, category)][(level.n, rain_range)] = (
            level.mean, backgrounds[(arch, category, rain_range)][level.n])
  values = {}
  for (arch, category), table in sorted(objectives.items()):
    largest = max(n for n, _ in table)
    baseline = min((o for o in table if o[0] == largest),
                   key=lambda o: (o[1] != 'medium', _order(o[1], RAIN_RANGES)))
    few = [o for o in table if o[0] <= FEW_BACKGROUNDS]
    if largest <= FEW_BACKGROUNDS or not few:
      continue
    base_e_r, base_e_b = table[baseline]
    counts = values.setdefault(arch, {'objectives': 0, 'beat_E_R': 0, 'lose_E_B': 0,
                                      'baselines': []})
    counts['objectives'] += len(few)
    counts['beat_E_R'] += sum(table[o][0] > base_e_r for o in few)
    counts['lose_E_B'] += sum(table[o][1] > base_e_b for o in few)
    counts['baselines'].append(f'{category} N={baseline[0]} {baseline[1]}')
  if not values:
    return _not_run(5, f'an objective with N <= {FEW_BACKGROUNDS} and a larger-N baseline '
                    'for some arch/category', excluded)
  passed = all(c['beat_E_R'] == c['lose_E_B'] == c['objectives'] for c in values.values())
  statistic = '; '.join(f'{arch}: {c["beat_E_R"]}/{c["objectives"]} beat on E_R, '
                        f'{c["lose_E_B"]}/{c["objectives"]} lose on E_B (baseline '
                        f'{", ".join(c["baselines"])})' for arch, c in values.items())
  return _verdict(5, PASS if passed else FAIL, statistic, values, excluded)


def category_complexity(category: str, data_dir: str | None = None) -> np.ndarray:
  """Complexity of COMPLEXITY_SAMPLE's fixed background patches of a category: (256,)."""
  images = load_category(category, data_dir or None).train
  patches = background_set(images, **COMPLEXITY_SAMPLE)
  return np.asarray(complexity(patches.astype(np.float32) / 255.0))


def _complexities(points: list[Point]) -> tuple[dict[str, dict], dict[str, str]]:
  """({category: mean, std, patches}, {category: why it was skipped}) for the points'
  categories, each loaded with the data_dir of its first point."""
  sources = {}
  for point in points:
    sources.setdefault(point.category, (point.config.get('category'),
                                        point.config.get('data_dir')))
  stats, skipped = {}, {}
  for name, (category, data_dir) in sorted(sources.items()):
    try:
      values = category_complexity(category, data_dir)
    except (ValueError, OSError) as error:  # ImageError is a ValueError
      logging.warning('Complexity: skipping category %s: %s', name, error)
      skipped[name] = str(error)
      continue
    stats[name] = {'mean': float(values.mean()), 'std': float(values.std()),
                   'patches': len(values)}
  return stats, skipped


def _reference_range(rows: list[dict]) -> str:
  """medium when present, else the most common rain range of the rows."""
  counts = collections.Counter(r['rain_range'] for r in rows)
  if 'medium' in counts or not counts:
    return 'medium'
  return counts.most_common(1)[0][0]


def _new_figure(panels: int, title: str, columns: int = 3):
  """An Agg figure with `panels` axes (at least one), `columns` to a row."""
  panels = max(panels, 1)
  rows, columns = -(-panels // columns), min(panels, columns)
  figure = Figure(figsize=(max(7.0, 4.6 * columns), 3.8 * rows), layout='constrained')
  FigureCanvasAgg(figure)
  figure.suptitle(title)
  axes = figure.subplots(rows, columns, squeeze=False).ravel()
  for axis in axes[panels:]:
    axis.set_visible(False)
  return figure, axes[:panels]


def _mark_not_run(axis):
  axis.text(0.5, 0.5, 'not run', transform=axis.transAxes, ha='center', va='center')
  axis.set_xticks([])
  axis.set_yticks([])


def _plot(axis, levels: list[Level], label: str, color: str, normalise: bool = False):
  """One line: seed means with min-max bars, or the means min-max normalised."""
  ns = np.array([l.n for l in levels])
  means, lows, highs = (np.array([getattr(l, f) for l in levels])
                        for f in ('mean', 'low', 'high'))
  if normalise:
    span = means.max() - means.min()
    axis.plot(ns, (means - means.min()) / span if span else np.zeros_like(means),
              marker='o', label=label, color=color)
  else:
    axis.errorbar(ns, means, yerr=[means - lows, highs - means], marker='o', capsize=3,
                  label=label, color=color)


def _n_axis(axis, ns):
  """A log2 x axis ticked at the Ns drawn."""
  axis.set_xscale('log', base=2)
  axis.xaxis.set_minor_locator(ticker.NullLocator())
  axis.set_xticks(ns, [str(n) for n in ns], rotation=45)
  axis.set_xlabel('N (background patches)')
  axis.legend(fontsize='small')


def _panels(path, title: str, series: dict[str, dict[str, list[Level]]], ylabel: str,
            normalise: bool = False, columns: int = 3) -> bool:
  """One panel per outer key, a line per inner key; 'not run' when empty. Returns
  whether anything was drawn."""
  figure, axes = _new_figure(len(series), title, columns)
  labels = list(dict.fromkeys(label for lines in series.values() for label in lines))
  if not series:
    _mark_not_run(axes[0])
  for axis, (panel, lines) in zip(axes, series.items()):
    axis.set_title(panel)
    axis.set_ylabel(ylabel)
    for label, levels in lines.items():
      _plot(axis, levels, label, f'C{labels.index(label) % 10}', normalise)
    _n_axis(axis, sorted({l.n for levels in lines.values() for l in levels}))
  figure.savefig(path, dpi=100)
  return bool(series)


def _order(value, order=()) -> tuple:
  """Sort key: position in `order` first, then by name."""
  return (order.index(value) if value in order else len(order), str(value))


def _nest(flat: dict[tuple, list[Level]], order=()) -> dict[str, dict[str, list[Level]]]:
  """{(panel, line): levels} -> {panel: {line: levels}}, lines sorted by `order`."""
  nested = collections.defaultdict(dict)
  by_panel_then_line = lambda item: (str(item[0][0]), _order(item[0][1], order))
  for (panel, line), levels in sorted(flat.items(), key=by_panel_then_line):
    nested[str(panel)][str(line)] = levels
  return dict(nested)


def _complexity_figure(path, stats: dict, skipped: dict) -> bool:
  figure, (axis,) = _new_figure(1, FIGURES['6b'][1])
  names = sorted(stats, key=lambda c: (COMPLEXITY_RANK.get(c, len(COMPLEXITY_RANK)), c))
  if names:
    axis.bar(names, [stats[c]['mean'] for c in names],
             yerr=[stats[c]['std'] for c in names], capsize=4)
    axis.set_ylabel('complexity (mean, std over patches)')
  else:
    _mark_not_run(axis)
  if skipped:
    axis.set_xlabel('skipped (cannot be loaded): ' + ', '.join(sorted(skipped)))
  figure.savefig(path, dpi=100)
  return bool(names)


def _draw_figures(report_dir, kept, rows, kind, reference_range, stats, skipped):
  """Write every figure; returns {figure id: drawn}."""
  at_range = [r for r in kept if r['rain_range'] == reference_range]
  by_arch = lambda metric: _nest(curves(at_range, metric, keys=('arch', 'category')))
  suffix = f' (rain range {reference_range})'
  resnet = [r for r in kept if r['arch'] == 'resnet']
  cross_set = f'natural_{kind}'
  if not any(r['testset'] == cross_set and r['category'] != 'natural' for r in rows):
    cross_set = 'natural_unseen'
  cross = [r for r in rows if r['testset'] == cross_set and r['converged'] is not False
           and r['rain_range'] == reference_range]
  has_cross = any(r['category'] != 'natural' for r in cross)
  cross_series = {}  # a row per arch: E_R, E_B
  if has_cross:
    by_metric = {m: _nest(curves(cross, m, keys=('arch', 'category'))) for m in ('E_R', 'E_B')}
    for arch in by_metric['E_R']:
      for metric, nested in by_metric.items():
        cross_series[f'{arch}: {metric} on {cross_set}'] = {
            f'trained on {category}': levels
            for category, levels in nested.get(arch, {}).items()}
  path = lambda key: report_dir / FIGURES[key][0]
  return {
      '4': _panels(path('4'), FIGURES['4'][1] + suffix, by_arch('E_R'), 'E_R (0-255)'),
      '5': _panels(path('5'), FIGURES['5'][1],
                   _nest(curves(resnet, 'E_R', keys=('category', 'rain_range')),
                         RAIN_RANGES), 'E_R (0-255)'),
      '6a': _panels(path('6a'), FIGURES['6a'][1] + suffix, by_arch('E_R'),
                    'normalised E_R', normalise=True),
      '6b': _complexity_figure(path('6b'), stats, skipped),
      '7': _panels(path('7'), FIGURES['7'][1] + suffix, by_arch('E_B'), 'E_B (0-255)'),
      '10': _panels(path('10'), FIGURES['10'][1] + suffix, cross_series, '0-255',
                    columns=2),
  }


def table2(kept: list[dict]) -> str:
  """Markdown: seed means of E_R, E_B, PSNR, SSIM per arch, category and objective."""
  means = {m: curves(kept, m) for m in ('E_R', 'E_B', 'psnr', 'ssim')}
  lines = ['| arch | category | rain range | N | seeds | E_R | E_B | PSNR | SSIM |',
           '|---|---|---|---:|---:|---:|---:|---:|---:|']
  keys = sorted(means['E_R'], key=lambda k: (k[0], k[1], _order(k[2], RAIN_RANGES)))
  for key in keys:
    by_metric = {m: {l.n: l for l in means[m].get(key, [])} for m in means}
    for level in means['E_R'][key]:
      cells = [f'{by_metric[m][level.n].mean:.{3 if m == "ssim" else 2}f}'
               if level.n in by_metric[m] else '-' for m in means]
      lines.append(f'| {" | ".join(map(str, key))} | {level.n} | {level.seeds} | '
                   f'{" | ".join(cells)} |')
  return '\n'.join(lines) if keys else '_not run_'


def _qualitative(points: list[Point], kept: list[dict], kind: str, report_dir) -> list[str]:
  """Markdown rows: strips of the smallest-N and largest-N points of each group, copied
  into REPORT/qualitative/."""
  used = {r['point'] for r in kept}
  groups = collections.defaultdict(list)
  for point in points:
    if point.name in used:
      config = point.config
      groups[(config.get('arch'), point.category, config.get('rain_range'))].append(point)
  num_patches = lambda p: p.config.get('num_patches')
  lines = []
  for key, members in sorted(groups.items()):
    members.sort(key=lambda p: (num_patches(p), p.config.get('seed'), p.name))
    low = members[0]  # each end's lowest seed
    high = next(p for p in members if num_patches(p) == num_patches(members[-1]))
    strips = [p.path / 'eval' / f'{p.category}_{kind}.png' for p in (low, high)]
    if num_patches(low) == num_patches(high) or not all(s.is_file() for s in strips):
      continue
    copies = pathlib.Path(report_dir) / 'qualitative'
    copies.mkdir(exist_ok=True)
    for p, strip in zip((low, high), strips):  # the report folder stands alone
      shutil.copyfile(strip, copies / f'{p.name}.png')
    cells = [f'N = {num_patches(p)}: ![{p.name}](qualitative/{p.name}.png)'
             for p in (low, high)]
    lines.append(f'| {_label(key)} | {cells[0]} | {cells[1]} |')
  if not lines:
    return []
  return ['| group | smallest N | largest N |', '|---|---|---|', *lines]


def _markdown(result: dict, points: list[Point], kept: list[dict], report_dir,
              figures_drawn: dict | None) -> str:
  kind, rows = result['test_rain'], result['rows']
  units = next((r['units'] for p in points for r in p.evals.values() if 'units' in r),
               DEFAULT_UNITS)
  recent = sum(any('recent' in r for r in p.evals.values()) for p in points)
  scales = sorted({str(r['scale']) for r in rows})
  text = [
      '# Study report', '',
      f'{result["num_points"]} grid points: {len(result["not_run"])} not run, '
      f'{len(result["not_converged"])} not converged.',
      '', f'Units: {units}.', '',
      f'Test set: `<category>_{kind}` '
      f'({"Rain100L rain layers" if kind == "rain100L" else "built-in unseen rain"} on '
      'held-out backgrounds; Rain100L is used only when every evaluated point has it).',
      f'Metrics: means over the last checkpoints\' evaluations for {recent} of '
      f'{len(points)} points, the final checkpoint\'s values for the others.',
      f'Figures 4, 6a, 7 and 10 show the {result["reference_range"]} rain range; curves '
      'are seed means with min-max bars. Not-converged points are left out of the '
      'figures, Table 2 and the verdicts.',
      f'Scales: {", ".join(scales) or "-"}' + (' (mixed: curves pool them)'
                                               if len(scales) > 1 else '') + '.',
      _compute_line(points),
      *(['**Scale smoke checks the pipeline only: its verdicts carry no evidence.**']
        if scales == ['smoke'] else []),
      '', '## Verdicts', '', '| claim | statement | statistic | status |',
      '|---|---|---|---|']
  for v in result['verdicts']:
    excluded = (f' (excluded, not converged: {", ".join(v["not_converged"])})'
                if v['not_converged'] else '')
    text.append(f'| {v["claim"]} | {v["text"]} | {v["statistic"]}{excluded} | '
                f'**{v["status"]}** |')
  text += ['', '## Figures', '']
  if figures_drawn is None:
    text += ['Figures were not drawn (figures=False).', '']
  else:
    for key, (name, title) in FIGURES.items():
      note = '' if figures_drawn[key] else ' (not run)'
      text += [f'### {title}{note}', '', f'![{title}]({name})', '']
  skipped = result['complexity_skipped']
  if skipped:
    text += ['Complexity skipped (category could not be loaded):', '',
             *[f'- {c}: {why}' for c, why in sorted(skipped.items())], '']
  text += ['## Table 2', '', f'Test set `<category>_{kind}`.', '', table2(kept), '',
           '## Qualitative (rainy | output | clean)', '']
  text += _qualitative(points, kept, kind, report_dir) or ['_no strips_']
  text += ['', '## NOT RUN', '']
  text += [f'- {p["point"]}: {p["reason"]}' for p in result['not_run']] or ['_none_']
  text += ['', '## NOT CONVERGED (excluded: train-set PSNR not above the identity\'s)', '']
  text += [f'- {p["point"]}: train PSNR {p["psnr"]:.2f} <= identity '
           f'{p["identity_psnr"]:.2f}' for p in result['not_converged']] or ['_none_']
  if result['unchecked']:
    text += ['', 'Convergence not checked (no train test set): ' +
             ', '.join(result['unchecked']) + '.']
  return '\n'.join(text) + '\n'


def _compute_line(points: list[Point]) -> str:
  """Training + eval wall time summed over the points the sweep timed (done.json)."""
  seconds = [p.seconds for p in points if p.seconds is not None]
  if not seconds:
    return 'Compute: no point was timed by the sweep.'
  return (f'Compute: {sum(seconds) / 60:.1f} min of training and evaluation over '
          f'{len(seconds)} timed points ({sum(seconds) / len(seconds):.0f} s a point).')


def _gate(point: Point) -> dict:
  """{'point', 'psnr', 'identity_psnr'} of a point's train set."""
  psnr, identity_psnr = gate_psnrs(point.evals[f'{point.category}_train'])
  return {'point': point.name, 'psnr': psnr, 'identity_psnr': identity_psnr}


def _finite(value):
  """JSON-safe: NaN and infinities become None."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite(v) for v in value]
  return value


def write_report(out_dir, figures: bool = True, test_rain: str = 'auto') -> dict:
  """Write OUT/report/ (see the module docstring) and return what it holds.

  test_rain: 'auto' (module docstring), or 'rain100L' / 'unseen' to force one.
  Returns {'rows', 'num_points', 'verdicts', 'not_run', 'not_converged', 'unchecked',
  'test_rain', 'reference_range', 'complexity', 'complexity_skipped', 'figures' (id ->
  path), 'empty_figures' (ids drawn as 'not run'), 'report' (path of report.md)}."""
  if test_rain not in ('auto', *TEST_RAINS):
    raise ValueError(f'test_rain must be auto, {" or ".join(TEST_RAINS)}; got {test_rain!r}.')
  out_dir = pathlib.Path(out_dir)
  points, not_run = load_points(out_dir)
  report_dir = out_dir / 'report'
  report_dir.mkdir(parents=True, exist_ok=True)
  rows = result_rows(points)
  kind = choose_test_rain(points) if test_rain == 'auto' else test_rain
  chosen = [r for r in rows if r['testset'] == f'{r["category"]}_{kind}']
  has_chosen = {r['point'] for r in chosen}
  num_points = len(points) + len(not_run)
  not_run += [{'point': p.name, 'reason': f'no {p.category}_{kind} results'}
              for p in points if p.name not in has_chosen]
  kept, _ = _partition(chosen)
  stats, skipped = _complexities(points)
  result = {
      'rows': rows, 'num_points': num_points, 'not_run': not_run, 'test_rain': kind,
      'reference_range': _reference_range(kept),
      'not_converged': [_gate(p) for p in points if p.converged is False],
      'unchecked': [p.name for p in points if p.converged is None],
      'verdicts': [claim_falls(chosen), claim_collapse(chosen), claim_flattens(chosen),
                   claim_complexity(stats), claim_tradeoff(chosen)],
      'complexity': stats, 'complexity_skipped': skipped,
      'figures': {}, 'empty_figures': [], 'report': report_dir / 'report.md'}
  drawn = None
  if figures:
    drawn = _draw_figures(report_dir, kept, rows, kind, result['reference_range'], stats,
                          skipped)
    result['figures'] = {key: report_dir / FIGURES[key][0] for key in FIGURES}
    result['empty_figures'] = [key for key, ok in drawn.items() if not ok]
  with open(report_dir / 'results.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
  (report_dir / 'results.json').write_text(json.dumps(_finite(rows), indent=1))
  summary = {k: result[k] for k in ('verdicts', 'not_run', 'not_converged', 'unchecked',
                                    'test_rain', 'reference_range', 'complexity',
                                    'complexity_skipped')}
  (report_dir / 'verdicts.json').write_text(json.dumps(_finite(summary), indent=1))
  result['report'].write_text(_markdown(result, points, kept, report_dir, drawn))
  return result


def cli(out_dir, figures: bool = True) -> int:
  """`python -m jaxderain.study report --out=OUT`: write the report, print the verdicts;
  1 with one line on stderr when OUT holds no study."""
  try:
    result = write_report(out_dir, figures=figures)
  except FileNotFoundError as error:
    print(error, file=sys.stderr)
    return 1
  for verdict in result['verdicts']:
    print(f'claim {verdict["claim"]}: {verdict["status"]}: {verdict["statistic"]}')
  print(f'{len(result["not_run"])} not run, {len(result["not_converged"])} not converged; '
        f'report: {result["report"]}')
  return 0
