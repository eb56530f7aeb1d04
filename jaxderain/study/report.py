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
import os
import pathlib
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
    5: 'Table 2: objectives with N <= 512 beat the largest-N baseline on E_R and lose '
       'on E_B, per arch',
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

  @property
  def category(self) -> str:
    return short_category(self.config.get('category', ''))

  @property
  def converged(self) -> bool | None:
    """Whether the train set's PSNR beats the identity's; None without that set."""
    result = self.evals.get(f'{self.category}_train')
    if result is None:
      return None
    return _metrics(result)['psnr'] > result['reference']['identity']['psnr']


class Level(NamedTuple):
  """A metric at one N, over seeds."""
  n: int
  mean: float
  low: float
  high: float
  seeds: int


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
    config = json.loads((path / 'config.json').read_text())
    evals = {f.stem: json.loads(f.read_text()) for f in sorted((path / 'eval').glob('*.json'))}
    if evals:
      points.append(Point(path.name, path, config, evals))
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

  256 stands for the inner N nearest to it in log2, within a factor of 2."""
  kept, excluded = _partition(rows)
  values = {}
  for key, levels in curves(kept, 'E_B').items():
    inner = [l for l in levels[1:-1] if abs(math.log2(l.n / FLAT_FROM)) <= 1]
    if len(levels) < MIN_LEVELS or not inner:
      continue
    anchor = min(inner, key=lambda l: abs(math.log2(l.n / FLAT_FROM)))
    early = levels[0].mean - anchor.mean
    late = anchor.mean - levels[-1].mean
    values[_label(key)] = {
        'rho_E_B': spearman([l.n for l in levels], [l.mean for l in levels]),
        'anchor_N': anchor.n, 'early_drop': early, 'late_change': late,
        'late_over_early': abs(late) / early if early > 0 else math.nan}
  if not values:
    return _not_run(3, f'{MIN_LEVELS} values of N around {FLAT_FROM} (128-512 inside the '
                    'range) for some arch/category/range', excluded)
  passed = all(v['rho_E_B'] < 0 and v['late_over_early'] < 0.25 for v in values.values())
  statistic = '; '.join(f'{k}: rho(E_B) {v["rho_E_B"]:.2f}, late/early change '
                        f'{v["late_over_early"]:.2f} (N {v["anchor_N"]})'
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
  """Claim 5: per arch, every N <= 512 has a higher E_R and a higher E_B than the
  largest N (> 512) of the same category and rain range."""
  kept, excluded = _partition(rows)
  errors = curves(kept, 'E_R')
  backgrounds = {k: {l.n: l.mean for l in v} for k, v in curves(kept, 'E_B').items()}
  values = {}
  for key, levels in errors.items():
    baseline = levels[-1]
    few = [l for l in levels if l.n <= FEW_BACKGROUNDS and l.n in backgrounds[key]]
    if baseline.n <= FEW_BACKGROUNDS or baseline.n not in backgrounds[key] or not few:
      continue
    counts = values.setdefault(key[0], {'objectives': 0, 'beat_E_R': 0, 'lose_E_B': 0})
    counts['objectives'] += len(few)
    counts['beat_E_R'] += sum(l.mean > baseline.mean for l in few)
    counts['lose_E_B'] += sum(backgrounds[key][l.n] > backgrounds[key][baseline.n]
                              for l in few)
  if not values:
    return _not_run(5, f'N <= {FEW_BACKGROUNDS} and a larger baseline N for some '
                    'arch/category/range', excluded)
  passed = all(c['beat_E_R'] == c['lose_E_B'] == c['objectives'] for c in values.values())
  statistic = '; '.join(f'{arch}: {c["beat_E_R"]}/{c["objectives"]} beat on E_R, '
                        f'{c["lose_E_B"]}/{c["objectives"]} lose on E_B'
                        for arch, c in values.items())
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


def _new_figure(panels: int, title: str):
  figure = Figure(figsize=(4.6 * max(panels, 1), 3.8), layout='constrained')
  FigureCanvasAgg(figure)
  figure.suptitle(title)
  return figure, figure.subplots(1, max(panels, 1), squeeze=False)[0]


def _note(axis, text='not run'):
  axis.text(0.5, 0.5, text, transform=axis.transAxes, ha='center', va='center',
            wrap=True)


def _plot(axis, levels: list[Level], label: str, normalise: bool = False):
  ns = np.array([l.n for l in levels])
  means, lows, highs = (np.array([getattr(l, f) for l in levels])
                        for f in ('mean', 'low', 'high'))
  if normalise:
    span = means.max() - means.min()
    axis.plot(ns, (means - means.min()) / span if span else means * 0, marker='o',
              label=label)
  else:
    axis.errorbar(ns, means, yerr=[means - lows, highs - means], marker='o', capsize=3,
                  label=label)
  axis.set_xscale('log', base=2)
  axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f'{v:g}'))
  axis.set_xlabel('N (background patches)')
  axis.legend(fontsize='small')


def _panels(path, title: str, series: dict[str, dict[str, list[Level]]], ylabel: str,
            normalise: bool = False) -> bool:
  """One panel per outer key, a line per inner key; 'not run' when empty. Returns
  whether anything was drawn."""
  figure, axes = _new_figure(len(series), title)
  if not series:
    _note(axes[0])
  for axis, (panel, lines) in zip(axes, series.items()):
    axis.set_title(panel)
    axis.set_ylabel(ylabel)
    for label, levels in lines.items():
      _plot(axis, levels, label, normalise)
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
    _note(axis)
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
  cross_series = {}
  if has_cross:
    for metric in ('E_R', 'E_B'):
      lines = curves(cross, metric, keys=('arch', 'category'))
      cross_series[f'{metric} on {cross_set}'] = {
          f'{arch} trained on {category}': levels
          for (arch, category), levels in lines.items()}
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
      '10': _panels(path('10'), FIGURES['10'][1] + suffix, cross_series, '0-255'),
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
  """Markdown rows: strips of the smallest-N and largest-N points of each group."""
  used = {r['point'] for r in kept}
  groups = collections.defaultdict(list)
  for point in points:
    if point.name in used:
      config = point.config
      groups[(config.get('arch'), point.category, config.get('rain_range'))].append(point)
  lines = []
  for key, members in sorted(groups.items()):
    members.sort(key=lambda p: (p.config.get('num_patches'), p.config.get('seed'), p.name))
    low = members[0]
    high = min((p for p in members
                if p.config.get('num_patches') == members[-1].config.get('num_patches')),
               key=lambda p: (p.config.get('seed'), p.name))
    strips = [p.path / 'eval' / f'{p.category}_{kind}.png' for p in (low, high)]
    if low.config.get('num_patches') == high.config.get('num_patches') or not all(
        s.is_file() for s in strips):
      continue
    links = [f'![{p.name}]({os.path.relpath(s, report_dir)})' for p, s in zip((low, high),
                                                                              strips)]
    lines.append(f'| {_label(key)} | N = {low.config.get("num_patches")}: {links[0]} | '
                 f'N = {high.config.get("num_patches")}: {links[1]} |')
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
      '', '## Verdicts', '', '| claim | statement | statistic | status |',
      '|---|---|---|---|']
  for v in result['verdicts']:
    excluded = (f' (excluded, not converged: {", ".join(v["not_converged"])})'
                if v['not_converged'] else '')
    text.append(f'| {v["claim"]} | {v["text"]} | {v["statistic"]}{excluded} | '
                f'**{v["status"]}** |')
  text += ['', '## Figures', '']
  if figures_drawn is None:
    text.append('Figures were not drawn (figures=False).')
  for key, (name, title) in FIGURES.items():
    if figures_drawn is not None:
      note = '' if figures_drawn[key] else ' (not run)'
      text += [f'### {title}{note}', '', f'![{title}]({name})', '']
  skipped = result['complexity_skipped']
  if skipped:
    text += ['Complexity skipped (category could not be loaded):', '',
             *[f'- {c}: {why}' for c, why in sorted(skipped.items())], '']
  text += ['## Table 2', '', f'Test set `<category>_{kind}`.', '', table2(kept), '',
           '## Qualitative (rainy | output | clean)', '']
  text += _qualitative(points, kept, kind, report_dir) or ['_no strips_']
  text += ['', '## Not run', '']
  text += [f'- {p["point"]}: {p["reason"]}' for p in result['not_run']] or ['_none_']
  text += ['', '## Not converged (train-set PSNR not above the identity\'s)', '']
  text += [f'- {p["point"]}: train PSNR {p["psnr"]:.2f} <= identity {p["identity_psnr"]:.2f}'
           for p in result['not_converged']] or ['_none_']
  if result['unchecked']:
    text += ['', 'Convergence not checked (no train test set): ' +
             ', '.join(result['unchecked']) + '.']
  return '\n'.join(text) + '\n'


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
  Returns {'rows', 'num_points', 'verdicts', 'not_run', 'not_converged', 'unchecked', 'test_rain',
  'reference_range', 'complexity', 'complexity_skipped', 'figures' (id -> path),
  'empty_figures' (ids drawn as 'not run'), 'report'}."""
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
  failed = [p for p in points if p.converged is False]
  result = {
      'rows': rows, 'num_points': num_points, 'not_run': not_run, 'test_rain': kind,
      'reference_range': _reference_range(kept),
      'not_converged': [{'point': p.name, 'psnr': _metrics(r)['psnr'],
                         'identity_psnr': r['reference']['identity']['psnr']}
                        for p in failed for r in [p.evals[f'{p.category}_train']]],
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
