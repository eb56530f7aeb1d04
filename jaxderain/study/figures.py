"""The report's figures, drawn with matplotlib's Agg backend into the report folder.

Curves are seed means per (arch, category, rain range, N) with min-max bars; Figures 4,
6a, 7 and 10 show one rain range (medium when present). Each figure is written even when
nothing can be drawn, its panel then marked 'not run'.
"""

from __future__ import annotations

import collections

import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxderain.data.testsets import UNSEEN, set_name
from jaxderain.rain import RAIN_RANGES, TRAINING_RANGES, shifts
from jaxderain.study import verdicts
from jaxderain.study.results import Level, Row, curves, order_key

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
  """An empty panel that says 'not run'."""
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
  _legend(axis)


def _legend(axis):
  """A legend of the axis's labelled lines, if it has any."""
  if axis.get_legend_handles_labels()[0]:
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


def _nest(flat: dict[tuple, list[Level]], order=()) -> dict[str, dict[str, list[Level]]]:
  """{(panel, line): levels} -> {panel: {line: levels}}, lines sorted by `order`."""
  nested = collections.defaultdict(dict)
  by_panel_then_line = lambda item: (str(item[0][0]), order_key(item[0][1], order))
  for (panel, line), levels in sorted(flat.items(), key=by_panel_then_line):
    nested[str(panel)][str(line)] = levels
  return dict(nested)


def _complexity_figure(path, stats: dict, skipped: dict) -> bool:
  """Bars of mean patch complexity per category, in claim 4's order."""
  figure, (axis,) = _new_figure(1, FIGURES['6b'][1])
  rank = verdicts.COMPLEXITY_RANK
  names = sorted(stats, key=lambda c: (rank.get(c, len(rank)), c))
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


def _distance_figure(path, rows: list[Row]) -> bool:
  """A row of panels (angle, length, width) per arch/category/range with 3 values of N:
  net removal of DISTANCE_NS against the angle offset beyond the training range, and
  against streak length and width with the training range shaded."""
  by_axis = {axis: verdicts.shifted_rows(rows, axis) for axis in shifts.AXES}
  group_of = lambda item: item.row.key(('arch', 'category', 'rain_range'))
  groups = collections.defaultdict(set)
  for item in by_axis['angle']:
    groups[group_of(item)].add(item.row.num_patches)
  groups = sorted((g for g, ns in groups.items() if len(ns) >= verdicts.MIN_LEVELS),
                  key=lambda g: (g[0], g[1], order_key(g[2], RAIN_RANGES)))
  figure, axes = _new_figure(len(groups) * len(shifts.AXES), FIGURES['distance'][1],
                             columns=len(shifts.AXES))
  if not groups:
    _mark_not_run(axes[0])
  for row_index, group in enumerate(groups):
    training = TRAINING_RANGES[group[2]]
    for column, axis_name in enumerate(shifts.AXES):
      axis = axes[row_index * len(shifts.AXES) + column]
      members = [item for item in by_axis[axis_name] if group_of(item) == group]
      ns = sorted({item.row.num_patches for item in members})
      shown = [n for n in ns if n in DISTANCE_NS] or ns
      x_of = {id(item.row): item.offset if axis_name == 'angle' else item.value
              for item in members}
      for i, n in enumerate(shown):
        levels = curves([item.row for item in members if item.row.num_patches == n],
                        'net_removal', keys=('arch',), x=lambda row: x_of[id(row)])
        for level_list in levels.values():
          _plot(axis, level_list, f'N = {n}', f'C{i % 10}')
      if axis_name == 'angle':
        axis.axvspan(min(item.offset for item in members), 0, color='0.9')
        axis.set_xlabel('|angle| beyond the training range (degrees)')
      else:
        bounds = training.length if axis_name == 'length' else (min(training.widths),
                                                                max(training.widths))
        axis.axvspan(min(bounds), max(bounds), color='0.9')
        axis.set_xlabel(f'streak {axis_name} (px)')
      axis.set_title(f'{verdicts.label(group)}: {axis_name}')
      axis.set_ylabel('net removal')
      _legend(axis)
  figure.savefig(path, dpi=80)
  return bool(groups)


def draw(report_dir, kept, rows, kind, reference_range, stats, skipped) -> dict[str, bool]:
  """Write every figure of FIGURES into report_dir; returns {figure id: drawn}.

  kept: rows of converged (or unchecked) points on test rain `kind`; rows: all rows;
  stats, skipped: category complexity and the categories it skipped."""
  at_range = [r for r in kept if r.rain_range == reference_range]
  by_arch = lambda metric: _nest(curves(at_range, metric, keys=('arch', 'category')))
  suffix = f' (rain range {reference_range})'
  resnet = [r for r in kept if r.arch == 'resnet']
  cross_set = set_name('natural', kind)
  if not any(r.testset == cross_set and r.category != 'natural' for r in rows):
    cross_set = set_name('natural', UNSEEN)
  cross = [r for r in rows if r.testset == cross_set and r.kept
           and r.rain_range == reference_range]
  has_cross = any(r.category != 'natural' for r in cross)
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
                                                      if r.kept]),
  }
