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
- Curves are means over seeds per (arch, category, rain range, N), with min-max bars.
  Figures 4, 6a, 7 and 10 show one rain range (medium when present).
- Verdicts (study/verdicts.py) test each claim with 95% intervals from the seed-noise
  bootstrap (study/statistics.py) on the chosen test rain; the distance statement uses
  the shifted rains (`<category>_angle<degrees>`, rain/shifts.py).
- Category complexity is measured once into OUT/complexity.json (it needs the category
  images) and read from there afterwards, so the report rebuilds from OUT alone.
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
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxderain.data.backgrounds import background_set, load_category
from jaxderain.rain import TRAINING_RANGES, shifts
from jaxderain.study import statistics, verdicts
from jaxderain.study.complexity import complexity
from jaxderain.study.verdicts import COMPLEXITY_RANK, RAIN_RANGES

FIELDS = ('point', 'arch', 'category', 'rain_range', 'num_patches', 'seed', 'scale',
          'testset', 'step', 'E_R', 'E_B', 'psnr', 'ssim', 'removal_share', 'net_removal',
          'over_subtraction', 'identity_psnr', 'identity_E_B', 'perfect_E_R', 'converged')
METRICS = ('E_R', 'E_B', 'psnr', 'ssim', 'removal_share', 'net_removal', 'over_subtraction')
TEST_RAINS = ('rain100L', 'unseen')
COMPLEXITY_SAMPLE = dict(num_patches=256, patch_size=64, seed=0)
COMPLEXITY_FILE = 'complexity.json'  # OUT/complexity.json: measured once, then reused
DEFAULT_UNITS = 'E_R, E_B and PSNR on the 0-255 scale'
DISTANCE_NS = (8, 128, 4096)  # the distance figure's lines (all N when none of these)
FIGURES = {
    '4': ('figure4_er_vs_n.png', 'Figure 4: E_R vs N per category, one panel per arch'),
    '5': ('figure5_er_vs_n_by_range.png', 'Figure 5: E_R vs N per rain range (resnet)'),
    '6a': ('figure6a_er_normalised.png',
           'Figure 6a: E_R normalised to [0, 1] within each category'),
    '6b': ('figure6b_complexity.png', 'Figure 6b: structural complexity per category'),
    '7': ('figure7_eb_vs_n.png', 'Figure 7: E_B vs N per category, one panel per arch'),
    '10': ('figure10_cross_category.png',
           'Figure 10: models trained on each category, tested on natural'),
    '5b': ('figure5b_net_removal_by_range.png',
           'Figure 5b: net removal vs N per rain range (resnet; claim 2)'),
    'distance': ('figure_distance.png',
                 'Distance: net removal as the test rain moves away from the training rain'),
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
  machine: dict = dataclasses.field(default_factory=dict)  # where it ran, from done.json
  unreadable: list[str] = dataclasses.field(default_factory=list)  # eval files left out

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
  """Evaluated points of OUT/points, and the others as {'point', 'reason'}. An
  unreadable eval file (e.g. cut short) is left out of its point, which keeps its other
  results and names the file in `unreadable`."""
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
      done = _read_json(path / 'done.json') if (path / 'done.json').is_file() else {}
    except ValueError as error:
      not_run.append({'point': path.name, 'reason': str(error)})
      continue
    evals, unreadable = {}, []
    for file in sorted((path / 'eval').glob('*.json')):
      try:
        evals[file.stem] = _read_json(file)
      except ValueError as error:
        unreadable.append(str(error).removeprefix('unreadable '))
    machine = {k: v for k, v in done.items() if k not in ('arg', 'seconds', 'results')}
    if evals:
      points.append(Point(path.name, path, config, evals, done.get('seconds'), machine,
                          unreadable))
    else:
      reason = 'no eval results' + (f' (unreadable: {"; ".join(unreadable)})'
                                    if unreadable else '')
      not_run.append({'point': path.name, 'reason': reason})
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


def claim_verdicts(chosen: list[dict], stats: dict, rows: list[dict]) -> list[dict]:
  """Claims 1-5 on the chosen test rain and the distance statement on the shifted rains
  among `rows` (study/verdicts.py), on converged points. A claim that cannot run without the
  not-converged points but could with them is NOT CONVERGED."""
  results = []
  for claim, rows in ((verdicts.claim_falls, chosen), (verdicts.claim_collapse, chosen),
                      (verdicts.claim_flattens, chosen), (None, None),
                      (verdicts.claim_tradeoff, chosen), (verdicts.distance_verdict, rows)):
    if claim is None:
      results.append(verdicts.claim_complexity(stats))
      continue
    kept, excluded = _partition(rows)
    result = claim(kept, excluded)
    if result['status'] == statistics.NOT_RUN and excluded and claim(rows)['tests']:
      result['status'] = statistics.NOT_CONVERGED
    results.append(result)
  return results


def category_complexity(category: str, data_dir: str | None = None) -> np.ndarray:
  """Complexity of COMPLEXITY_SAMPLE's fixed background patches of a category: (256,)."""
  images = load_category(category, data_dir or None).train
  patches = background_set(images, **COMPLEXITY_SAMPLE)
  return np.asarray(complexity(patches.astype(np.float32) / 255.0))


def _complexities(points: list[Point], out_dir) -> tuple[dict[str, dict], dict[str, str]]:
  """({category: mean, std, patches}, {category: why it was skipped}) for the points'
  categories and the ranked ones of claim 4, each loaded with the data_dir of its first
  point (the ranked ones with the first data_dir any point names). Read from and added
  to OUT/complexity.json, so categories measured once need no images again."""
  cache_file = pathlib.Path(out_dir) / COMPLEXITY_FILE
  stats = _read_json(cache_file) if cache_file.is_file() else {}
  sources = {}
  for point in points:
    sources.setdefault(point.category, (point.config.get('category'),
                                        point.config.get('data_dir')))
  data_dir = next((p.config.get('data_dir') for p in points if p.config.get('data_dir')), '')
  for name in COMPLEXITY_RANK if points else ():
    sources.setdefault(name, (name, data_dir))
  skipped = {}
  for name, (category, data_dir) in sorted(sources.items()):
    if name in stats:
      continue
    try:
      values = category_complexity(category, data_dir)
    except (ValueError, OSError) as error:  # ImageError is a ValueError
      logging.warning('Complexity: skipping category %s: %s', name, error)
      skipped[name] = str(error)
      continue
    stats[name] = {'mean': float(values.mean()), 'std': float(values.std()),
                   'patches': len(values)}
  if stats:
    cache_file.write_text(json.dumps(stats, indent=1, sort_keys=True))
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


def _distance_figure(path, rows: list[dict]) -> bool:
  """A row of panels (angle, length, width) per arch/category/range with 3 values of N:
  net removal of DISTANCE_NS against the angle offset beyond the training range, and
  against streak length and width with the training range shaded."""
  by_axis = {axis: verdicts.shifted_rows(rows, axis) for axis in shifts.AXES}
  groups = collections.defaultdict(set)
  for row in by_axis['angle']:
    groups[(row['arch'], row['category'], row['rain_range'])].add(row['num_patches'])
  groups = sorted((g for g, ns in groups.items() if len(ns) >= verdicts.MIN_LEVELS),
                  key=lambda g: (g[0], g[1], _order(g[2], RAIN_RANGES)))
  figure, axes = _new_figure(len(groups) * len(shifts.AXES), FIGURES['distance'][1],
                             columns=len(shifts.AXES))
  if not groups:
    _mark_not_run(axes[0])
  for row_index, group in enumerate(groups):
    training = TRAINING_RANGES[group[2]]
    for column, axis_name in enumerate(shifts.AXES):
      axis = axes[row_index * len(shifts.AXES) + column]
      members = [r for r in by_axis[axis_name]
                 if (r['arch'], r['category'], r['rain_range']) == group]
      ns = sorted({r['num_patches'] for r in members})
      shown = [n for n in ns if n in DISTANCE_NS] or ns
      x_field = 'offset' if axis_name == 'angle' else 'value'
      for i, n in enumerate(shown):
        levels = curves([{**r, 'num_patches': r[x_field]} for r in members
                         if r['num_patches'] == n], 'net_removal', keys=('arch',))
        for level_list in levels.values():
          _plot(axis, level_list, f'N = {n}', f'C{i % 10}')
      if axis_name == 'angle':
        axis.axvspan(min(r['offset'] for r in members), 0, color='0.9')
        axis.set_xlabel('|angle| beyond the training range (degrees)')
      else:
        bounds = training.length if axis_name == 'length' else (min(training.widths),
                                                                max(training.widths))
        axis.axvspan(min(bounds), max(bounds), color='0.9')
        axis.set_xlabel(f'streak {axis_name} (px)')
      axis.set_title(f'{verdicts.label(group)}: {axis_name}')
      axis.set_ylabel('net removal')
      axis.legend(fontsize='small')
  figure.savefig(path, dpi=80)
  return bool(groups)


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
    by_metric = {m: _nest(curves(cross, m, keys=('arch', 'category')))
                 for m in ('E_R', 'net_removal', 'E_B')}
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
      '10': _panels(path('10'), FIGURES['10'][1] + suffix, cross_series,
                    'E_R, E_B (0-255); net removal', columns=3),
      '5b': _panels(path('5b'), FIGURES['5b'][1],
                    _nest(curves(resnet, 'net_removal', keys=('category', 'rain_range')),
                          RAIN_RANGES), 'net removal'),
      'distance': _distance_figure(path('distance'), [r for r in rows
                                                      if r['converged'] is not False]),
  }


TABLE2_COLUMNS = {'E_R': 'E_R', 'net_removal': 'net removal',
                  'over_subtraction': 'over-subtraction', 'E_B': 'E_B', 'psnr': 'PSNR',
                  'ssim': 'SSIM'}


def table2(kept: list[dict]) -> str:
  """Markdown: seed means of TABLE2_COLUMNS per arch, category and objective."""
  means = {m: curves(kept, m) for m in TABLE2_COLUMNS}
  lines = ['| arch | category | rain range | N | seeds | ' +
           ' | '.join(TABLE2_COLUMNS.values()) + ' |',
           '|---|---|---|---:|---:|' + '---:|' * len(TABLE2_COLUMNS)]
  keys = sorted(means['E_R'], key=lambda k: (k[0], k[1], _order(k[2], RAIN_RANGES)))
  for key in keys:
    by_metric = {m: {l.n: l for l in means[m].get(key, [])} for m in means}
    for level in means['E_R'][key]:
      cells = [f'{by_metric[m][level.n].mean:.{2 if m in ("E_R", "E_B", "psnr") else 3}f}'
               if level.n in by_metric[m] else '-' for m in means]
      lines.append(f'| {" | ".join(map(str, key))} | {level.n} | {level.seeds} | '
                   f'{" | ".join(cells)} |')
  return '\n'.join(lines) if keys else '_not run_'


def _qualitative(points: list[Point], kept: list[dict], kind: str, report_dir) -> list[str]:
  """Markdown rows: strips of the smallest-N and largest-N points of each group, copied
  into REPORT/qualitative/ (a copy made before stands in for a strip that is not kept,
  e.g. in a study committed without its images)."""
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
    copies = pathlib.Path(report_dir) / 'qualitative'
    strips = [p.path / 'eval' / f'{p.category}_{kind}.png' for p in (low, high)]
    have = [s.is_file() or (copies / f'{p.name}.png').is_file()
            for p, s in zip((low, high), strips)]
    if num_patches(low) == num_patches(high) or not all(have):
      continue
    copies.mkdir(exist_ok=True)
    for p, strip in zip((low, high), strips):  # the report folder stands alone
      if strip.is_file():
        shutil.copyfile(strip, copies / f'{p.name}.png')
    cells = [f'N = {num_patches(p)}: ![{p.name}](qualitative/{p.name}.png)'
             for p in (low, high)]
    lines.append(f'| {verdicts.label(key)} | {cells[0]} | {cells[1]} |')
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
      _machines_line(points),
      '', '## Verdicts', '', VERDICT_METHOD, '', '| claim | statement | status |',
      '|---|---|---|']
  for v in result['verdicts']:
    text.append(f'| {v["claim"]} | {v["text"]} | **{v["status"]}** |')
  for v in result['verdicts']:
    text += ['', f'### Claim {v["claim"]}: {v["status"]}' if v['claim'] != 'distance'
             else f'### Distance: {v["status"]}', '', v['text'] + '.', '']
    for t in v['tests']:
      text.append(f'- {t["label"]}: {t["statistic"]}: **{t["status"]}**')
      if t.get('gaps'):
        text.append('  - gap by offset: ' + ', '.join(
            f'{o}: {e:.3f} [{lo:.3f}, {hi:.3f}]' for o, (e, lo, hi) in t['gaps'].items()))
    if not v['tests']:
      text.append(f'- {v["statistic"]}')
    if v.get('note'):
      text += ['', v['note']]
    if v['points_used']:
      text += ['', f'Points used ({len(v["points_used"])}): ' + ', '.join(v['points_used'])
               + '.']
    if v['left_out']:
      reasons = collections.defaultdict(list)
      for point, reason in v['left_out'].items():
        reasons[reason].append(point)
      text += ['', 'Left out: ' + '; '.join(f'{len(p)} point(s), {why} ({", ".join(p)})'
                                           for why, p in reasons.items()) + '.']
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
  if result['unreadable']:
    text += ['', 'Unreadable result files, left out (their points keep their other results; '
             '`study run` re-evaluates them):', '', *[f'- {u}' for u in result['unreadable']]]
  text += ['', '## NOT CONVERGED (excluded: train-set PSNR not above the identity\'s)', '']
  text += [f'- {p["point"]}: train PSNR {p["psnr"]:.2f} <= identity '
           f'{p["identity_psnr"]:.2f}' for p in result['not_converged']] or ['_none_']
  if result['unchecked']:
    text += ['', 'Convergence not checked (no train test set): ' +
             ', '.join(result['unchecked']) + '.']
  return '\n'.join(text) + '\n'


VERDICT_METHOD = (
    'Each claim is tested by statistics of per-point seed means with 95% intervals from a '
    'seed-noise bootstrap: the within-point seed variance is pooled over all points of one '
    'arch and category (with 2-3 seeds a point cannot estimate its own spread), each draw '
    'takes a noise level from its chi-square distribution and point means from a normal '
    'around the observed ones (for a difference or a slope this is the pooled t-interval). '
    'PASS: the interval lies on the paper\'s side of no effect; FAIL: on the other side; '
    'INCONCLUSIVE: it straddles it (or no interval: 1 seed a point). A claim fails if any '
    'test fails and passes if all pass. Removal is net removal '
    '(1 - sum_M |output - clean| / sum_M (rainy - clean), eval/metrics.py), which counts '
    'over-subtraction as damage; E_R is reported beside it. Left out of every interval: '
    'noise that differs between points of a group (small N varies more), and the '
    'variation of the test images (each point sees the same test set).')


def _machines_line(points: list[Point]) -> str:
  """Which machines the points ran on, from done.json."""
  machines = collections.Counter(
      f'{p.machine.get("device", "?")} ({p.machine.get("cpu", "?")})' for p in points
      if p.machine)
  if not machines:
    return 'Machines: not recorded.'
  return 'Machines: ' + '; '.join(f'{n} points on {m}' for m, n in machines.items()) + '.'


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
  Returns {'rows', 'num_points', 'verdicts', 'not_run', 'unreadable' (result files left
  out), 'not_converged', 'unchecked', 'test_rain', 'reference_range', 'complexity',
  'complexity_skipped', 'figures' (id -> path), 'empty_figures' (ids drawn as 'not run'),
  'report' (path of report.md)}."""
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
  stats, skipped = _complexities(points, out_dir)
  result = {
      'rows': rows, 'num_points': num_points, 'not_run': not_run, 'test_rain': kind,
      'unreadable': [f'{p.name}: {f}' for p in points for f in p.unreadable],
      'reference_range': _reference_range(kept),
      'not_converged': [_gate(p) for p in points if p.converged is False],
      'unchecked': [p.name for p in points if p.converged is None],
      'verdicts': claim_verdicts(chosen, stats, rows),
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
  summary = {k: result[k] for k in ('verdicts', 'not_run', 'unreadable', 'not_converged',
                                    'unchecked', 'test_rain', 'reference_range',
                                    'complexity', 'complexity_skipped')}
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
    print(f'claim {verdict["claim"]}: {verdict["status"]}')
    for test in verdict['tests']:
      print(f'  {test["label"]}: {test["statistic"]}: {test["status"]}')
  for unreadable in result['unreadable']:
    print(f'unreadable, left out: {unreadable}', file=sys.stderr)
  print(f'{len(result["not_run"])} not run, {len(result["not_converged"])} not converged, '
        f'{len(result["unreadable"])} unreadable result files; report: {result["report"]}')
  return 0
