"""The study's report: results table, figures, Table 2 and verdicts on the paper's claims.

Reads a sweep's output folder OUT (study/results.py) and writes OUT/report/: results.csv
(one row per point and test set), verdicts.json, the figures as PNG
(study/figures.py) and report.md, which shows them all. A report on a test rain other than
the automatic choice goes to OUT/report_<rain>/.

  python -m jaxderain.study report --out=OUT [--test_rain=unseen]   # calls cli(OUT)

Choices:
- The test rain and the convergence gate are results.py's: not-converged points stay in
  the table, are listed as NOT CONVERGED and are left out of the figures, Table 2 and the
  verdicts; a point without a train set is used and listed as unchecked.
- Verdicts (study/verdicts.py): each claim's primary test (study/primary.py, its own
  test rain) on the confirmatory seeds, the same on the exploratory seeds, and the
  secondary tests on the chosen test rain (the distance claim's on the shifted rains,
  `<category>_angle<degrees>`), with 95% intervals from study/statistics.py.
- Category complexity (study/complexity.py) is measured once into OUT/complexity.json
  (it needs the category images) and read from there afterwards, so the report rebuilds
  from OUT alone.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import math
import pathlib
import shutil
import sys

from jaxderain.data.testsets import RAIN100L, set_name
from jaxderain.errors import ConfigError
from jaxderain.rain import RAIN_RANGES
from jaxderain.study import claims, complexity, primary, results, statistics, verdicts
from jaxderain.study.figures import FIGURES, draw as draw_figures
from jaxderain.study.folders import StudyFolder
from jaxderain.study.results import PointResult, Row, curves, order_key
from jaxderain.study.statistics import Interval
from jaxderain.workdir import EVAL, hold

DEFAULT_UNITS = 'E_R, E_B and PSNR on the 0-255 scale'

TABLE2_COLUMNS = {'E_R': 'E_R', 'net_removal': 'net removal',
                  'over_subtraction': 'over-subtraction', 'E_B': 'E_B', 'psnr': 'PSNR',
                  'ssim': 'SSIM'}


def table2(kept: list[Row]) -> str:
  """Markdown: seed means of TABLE2_COLUMNS per arch, category and objective."""
  means = {m: curves(kept, m) for m in TABLE2_COLUMNS}
  lines = ['| arch | category | rain range | N | seeds | ' +
           ' | '.join(TABLE2_COLUMNS.values()) + ' |',
           '|---|---|---|---:|---:|' + '---:|' * len(TABLE2_COLUMNS)]
  keys = sorted(means['E_R'], key=lambda k: (k[0], k[1], order_key(k[2], RAIN_RANGES)))
  for key in keys:
    by_metric = {m: {l.n: l for l in means[m].get(key, [])} for m in means}
    for level in means['E_R'][key]:
      cells = [f'{by_metric[m][level.n].mean:.{2 if m in ("E_R", "E_B", "psnr") else 3}f}'
               if level.n in by_metric[m] else '-' for m in means]
      lines.append(f'| {" | ".join(map(str, key))} | {level.n} | {level.seeds} | '
                   f'{" | ".join(cells)} |')
  return '\n'.join(lines) if keys else '_not run_'


def _qualitative(points: list[PointResult], kept: list[Row], kind: str,
                 report_dir) -> list[str]:
  """Markdown rows: strips of the smallest-N and largest-N points of each group, copied
  into REPORT/qualitative/ (a copy made before stands in for a strip that is not kept,
  e.g. in a study committed without its images)."""
  used = {r.point for r in kept}
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
    strips = [p.path / EVAL / f'{set_name(p.category, kind)}.png' for p in (low, high)]
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


@dataclasses.dataclass
class Report:
  """What a report holds: the rows (every point and test set), the verdicts, the points
  not run, unreadable files, not converged (their gate figures), kept by the gate but
  removing little (with why), unchecked (no train set), the test rain, the rain range of
  the single-range figures, category complexity and the categories it skipped, the
  figures (id -> path; those drawn empty) and report.md's path."""
  rows: list[Row]
  num_points: int
  verdicts: list[verdicts.Verdict]
  not_run: list[dict]
  unreadable: list[str]
  not_converged: list[dict]
  little_removal: list[dict]
  unchecked: list[str]
  test_rain: str
  reference_range: str
  complexity: dict[str, dict]
  complexity_skipped: dict[str, str]
  path: pathlib.Path
  figures: dict[str, pathlib.Path] = dataclasses.field(default_factory=dict)
  empty_figures: list[str] = dataclasses.field(default_factory=list)

  def summary(self) -> dict:
    """verdicts.json: everything but the rows and the figures."""
    return {'verdicts': [v.as_dict() for v in self.verdicts], 'not_run': self.not_run,
            'unreadable': self.unreadable, 'not_converged': self.not_converged,
            'little_removal': self.little_removal, 'unchecked': self.unchecked,
            'test_rain': self.test_rain, 'reference_range': self.reference_range,
            'complexity': self.complexity, 'complexity_skipped': self.complexity_skipped}


def _header(report: Report, points: list[PointResult]) -> list[str]:
  """The title, what is confirmatory, counts, units, test set, scales, compute."""
  units = next((r['units'] for p in points for r in p.evals.values() if 'units' in r),
               DEFAULT_UNITS)
  recent = sum(any('recent' in r for r in p.evals.values()) for p in points)
  scales = sorted({str(r.scale) for r in report.rows})
  kind = report.test_rain
  return [
      '# Study report', '',
      f'Confirmatory: the primary tests on seeds {_seed_range(primary.CONFIRMATORY_SEEDS)}, '
      'fixed before they ran (docs/study.md#primary-tests). **Exploratory: everything '
      'else** (the other seeds\' estimates, the secondary tests, the figures\' reading). '
      f'A primary verdict read before its grid\'s seeds have all run ({primary.MAX_SEEDS} '
      f'a point at cpu, {primary.TREND_SEEDS} at cpu-long) is interim: it decides nothing '
      '(no correction for looking early, and with 2 seeds a point the 95% intervals cover '
      'about 90% in simulation).',
      '',
      f'{report.num_points} grid points: {len(report.not_run)} not run, '
      f'{len(report.not_converged)} not converged' + (
          f', {len(report.little_removal)} removing little of their own training rain '
          '(listed at the end).' if report.little_removal else '.'),
      '', f'Units: {units}.', '',
      f'Test set: `<category>_{kind}` '
      f'({"Rain100L rain layers" if kind == RAIN100L else "built-in unseen rain"} on '
      'held-out backgrounds; Rain100L is used only when every evaluated point has it).',
      f'Metrics: means over the last checkpoints\' evaluations for {recent} of '
      f'{len(points)} points' + (', the final checkpoint\'s values for the others.'
                                 if recent < len(points) else '.'),
      f'Figures 4, 6a, 7 and 10 show the {report.reference_range} rain range; curves '
      'are seed means with min-max bars. Not-converged points are left out of the '
      'figures, Table 2 and the verdicts.',
      f'Scales: {", ".join(scales) or "-"}' + (' (mixed: curves pool them)'
                                               if len(scales) > 1 else '') + '.',
      _compute_line(points),
      *(['**Scale smoke checks the pipeline only: its verdicts carry no evidence.**']
        if scales == ['smoke'] else []),
      _machines_line(points)]


def _verdicts_section(report: Report) -> list[str]:
  """The verdict table, then each claim's tests."""
  text = ['## Verdicts', '', VERDICT_METHOD, '',
          '| claim | statement | verdict: primary test on the confirmatory seeds | '
          'exploratory seeds | secondary tests agreeing |', '|---|---|---|---|---|']
  for v in report.verdicts:
    text.append(f'| {v.claim} | {v.text} | {_verdict_cell(v)} | '
                f'{_outcome_cell(v.exploratory)} | {_agree_cell(v)} |')
  for v in report.verdicts:
    title = f'Claim {v.claim}' if v.claim != 'distance' else 'Distance'
    text += ['', f'### {title}: {v.status}', '', v.text + '.', '', *_claim_section(v)]
  return text


def _figures_section(report: Report, drawn: dict | None) -> list[str]:
  text = ['## Figures', '']
  if drawn is None:
    text += ['Figures were not drawn (figures=False).', '']
  else:
    for key, (name, title) in FIGURES.items():
      note = '' if drawn[key] else ' (not run)'
      text += [f'### {title}{note}', '', f'![{title}]({name})', '']
  if report.complexity_skipped:
    text += ['Complexity skipped (category could not be loaded):', '',
             *[f'- {c}: {why}' for c, why in sorted(report.complexity_skipped.items())], '']
  return text


def _excluded_section(report: Report) -> list[str]:
  """The points not run, not converged, removing little, unchecked."""
  text = ['## NOT RUN', '']
  text += [f'- {p["point"]}: {p["reason"]}' for p in report.not_run] or ['_none_']
  if report.unreadable:
    text += ['', 'Unreadable result files, left out (their points keep their other results; '
             '`study run` re-evaluates them):', '', *[f'- {u}' for u in report.unreadable]]
  text += ['', '## NOT CONVERGED (excluded: train-set PSNR not above the identity\'s)', '']
  text += [f'- {p["point"]}: train PSNR {p["psnr"]:.2f} <= identity '
           f'{p["identity_psnr"]:.2f}' for p in report.not_converged] or ['_none_']
  if report.little_removal:
    text += ['', f'Kept by the gate but removing little of their own training rain (net '
             f'removal below {results.LITTLE_REMOVAL}; the verdicts include them):', '',
             *[f'- {p["point"]}: {p["why"]}: net removal {p["net_removal"]:.2g}, train PSNR '
               f'{p["psnr"]:.4f} against the identity\'s {p["identity_psnr"]:.4f}'
               for p in report.little_removal]]
  if report.unchecked:
    text += ['', 'Convergence not checked (no train test set): ' +
             ', '.join(report.unchecked) + '.']
  return text


def _markdown(report: Report, points: list[PointResult], kept: list[Row],
              drawn: dict | None) -> str:
  """report.md: its sections in order."""
  kind = report.test_rain
  text = [*_header(report, points), '', *_verdicts_section(report), '',
          *_figures_section(report, drawn),
          '## Table 2', '', f'Test set `<category>_{kind}`.', '', table2(kept), '',
          '## Qualitative (rainy | output | clean)', '',
          *(_qualitative(points, kept, kind, report.path.parent) or ['_no strips_']), '',
          *_excluded_section(report)]
  return '\n'.join(text) + '\n'


VERDICT_METHOD = (
    'Each claim but 4 is decided by its primary test, fixed before the confirmatory runs '
    '(docs/study.md#primary-tests): resnet on natural backgrounds, tested on rain measured '
    'as unseen by its training range, on the confirmatory seeds alone. The same test on the '
    'exploratory seeds is shown beside it, and every other test is secondary: counted as '
    'agreeing when it holds on the paper\'s side after Holm\'s correction over the claim\'s '
    'secondary tests (family-wise 5%), listed as not tested without an interval, never '
    'changing a verdict. Intervals are 95%, from each point\'s own seed spread and the '
    'test images (study/statistics.py); a point with one seed gives none. PASS: the '
    'interval lies on the paper\'s side of no effect; FAIL: on the other side; '
    'INCONCLUSIVE: it holds no effect (or there is no interval). Removal is net removal '
    '(1 - sum_M |output - clean| / sum_M (rainy - clean), eval/metrics.py), which counts '
    'over-subtraction as damage. Claim 4 has no primary test: it fails if a pair fails. '
    'Left out of every interval: noise between checkpoints beyond the mean of the last '
    'three evaluations (the per-image values are the last checkpoint\'s), other test '
    'rains than the one named, and other architectures, categories and scales than the '
    'test\'s own.')


def _seed_range(seeds) -> str:
  return f'{min(seeds)}-{max(seeds)}'


def _outcome_cell(outcome: claims.Outcome | None) -> str:
  """A test's statistics with their intervals and seeds, or why it has none."""
  if outcome is None:
    return '-'
  if outcome.status in (statistics.NOT_RUN, statistics.NOT_CONVERGED):
    return f'{outcome.status} ({outcome.seeds_text})'
  return f'{outcome.status}: {outcome.text()} ({outcome.seeds_text})'


def _verdict_cell(verdict: verdicts.Verdict) -> str:
  if verdict.primary is None:
    return f'**{verdict.status}**: ' + '; '.join(
        f'{t.label}: {t.text()} **{t.status}**' for t in verdict.secondary)
  first = verdict.primary
  return f'**{verdict.status}**: {first.label}: ' + (
      f'({first.seeds_text})' if not first.intervals
      else f'{first.text()} ({first.seeds_text})')


def _agree_cell(verdict: verdicts.Verdict) -> str:
  if verdict.primary is None:
    return '-'
  not_tested = verdict.not_tested
  return f'{verdict.agree} of {len(verdict.tested)}' + (
      f' ({len(not_tested)} not tested)' if not_tested else '')


def _claim_section(verdict: verdicts.Verdict) -> list[str]:
  """A claim's primary test (confirmatory and exploratory), its secondary tests and the
  points used."""
  text = []
  if verdict.primary is not None:
    first = verdict.primary
    text += [f'Primary test, {first.label}: confirmatory seeds: {_outcome_cell(first)}; '
             f'exploratory seeds: {_outcome_cell(verdict.exploratory)}.', '']
    if first.dropped:
      text += [f'Left out for a non-finite value: {", ".join(first.dropped)}.', '']
    text += [f'Secondary tests (exploratory seeds; {_agree_cell(verdict)} agree after '
             'Holm):', '']
  holm = {True: ' (agrees after Holm)', False: '', None: ' (not tested)'}
  for t in verdict.secondary:
    dropped = (f'; left out for a non-finite value: {", ".join(t.dropped)}'
               if t.dropped else '')
    agrees = holm[t.agrees] if verdict.primary is not None else ''
    text.append(f'- {t.label}: {t.text()}: **{t.status}**{agrees}{dropped}')
  if not verdict.secondary:
    text.append('- no secondary test could be computed')
  if verdict.note:
    text += ['', verdict.note]
  used = sorted(verdict.points_used())
  if used:
    text += ['', f'Points used ({len(used)}): ' + ', '.join(used) + '.']
  return text


def _machines_line(points: list[PointResult]) -> str:
  """Which machines the points ran on, from done.json."""
  machines = collections.Counter(
      f'{p.machine.get("device", "?")} ({p.machine.get("cpu", "?")})' for p in points
      if p.machine)
  if not machines:
    return 'Machines: not recorded.'
  return 'Machines: ' + '; '.join(f'{n} points on {m}' for m, n in machines.items()) + '.'


def _compute_line(points: list[PointResult]) -> str:
  """Training + eval wall time summed over the points the sweep timed (done.json)."""
  timed = [p for p in points if p.seconds is not None]
  if not timed:
    return 'Compute: no point was timed by the sweep.'
  seconds = [p.seconds for p in timed]
  starts = [p.resumed_from_step for p in timed]
  resumed, unknown = sum(bool(s) for s in starts), starts.count(None)
  notes = ([f'{resumed} of them resumed from a checkpoint and timed from there only']
           if resumed else []) + ([f'{unknown} do not record whether they resumed']
                                  if unknown and unknown < len(starts) else [])
  return (f'Compute: {sum(seconds) / 60:.1f} min of training and evaluation over '
          f'{len(seconds)} timed points ({sum(seconds) / len(seconds):.0f} s a point)' +
          ''.join(f'; {n}' for n in notes) + '.')


def _complexities(points: list[PointResult],
                  out_dir) -> tuple[dict[str, dict], dict[str, str]]:
  """Category complexity (complexity.cached_category_stats) of the points' categories
  and the ranked ones of claim 4, each loaded with the data_dir of its first point (the
  ranked ones with the first data_dir any point names)."""
  sources = {}
  for point in points:
    sources.setdefault(point.category, (point.config.get('category'),
                                        point.config.get('data_dir')))
  data_dir = next((p.config.get('data_dir') for p in points if p.config.get('data_dir')), '')
  for name in verdicts.COMPLEXITY_RANK if points else ():
    sources.setdefault(name, (name, data_dir))
  return complexity.cached_category_stats(out_dir, sources)


def _finite(value):
  """JSON-safe: NaN and infinities become None."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite(v) for v in value]
  return value


def _moved(now: Interval, before: Interval, change: Interval) -> str:
  """How an effect moved between rungs, in words."""
  if math.isnan(change.low):
    return 'no interval'
  opposite = now.estimate * before.estimate < 0
  if opposite and statistics.direction(now, 1) != statistics.INCONCLUSIVE != \
      statistics.direction(before, 1):
    return 'flipped'
  if statistics.direction(change, 1) == statistics.INCONCLUSIVE:
    return 'no change the interval can tell from none'
  return 'grew' if abs(now.estimate) > abs(before.estimate) else 'shrank'


def rung_lines(rows: list[Row], previous_out) -> list[str]:
  """Markdown: the trend claims' primary tests here and in the study at `previous_out`
  (another rung), on the confirmatory seeds both have, and how each statistic moved."""
  previous, _ = results.load_points(previous_out)
  before_rows = results.result_rows(previous)
  seeds = sorted({r.seed for r in rows if primary.confirmatory(r.seed)} &
                 {r.seed for r in before_rows})
  scales = lambda rs: ', '.join(sorted({str(r.scale) for r in rs})) or '-'
  lines = [f'## From {scales(before_rows)} to {scales(rows)}', '',
           f'The primary tests of claims {" and ".join(map(str, primary.TREND_CLAIMS))} on '
           f'the confirmatory seeds both rungs have ({", ".join(map(str, seeds)) or "none"}); '
           'change: this rung minus the other, on the same test images.', '']
  for test in primary.TESTS:
    if test.claim not in primary.TREND_CLAIMS:
      continue
    now, before = claims.run(test, rows, seeds), claims.run(test, before_rows, seeds)
    lines.append(f'- claim {test.claim}, {test.label}: {scales(before_rows)} '
                 f'{_outcome_cell(before)}; {scales(rows)} {_outcome_cell(now)}.')
    for name, change in primary.rung_change(test, rows, before_rows, seeds).items():
      lines.append(f'  - {name}: change {change.text()}: '
                   f'{_moved(now.intervals[name], before.intervals[name], change)}.')
  return lines


def write_report(out_dir, figures: bool = True, test_rain: str = 'auto',
                 expected: list[str] = (), previous_rung=None) -> Report:
  """Write OUT/report/ (see the module docstring) and return what it holds.

  test_rain: 'auto' (results.choose_test_rain), or 'rain100L' / 'unseen' to force one.
  expected: names of the grid's points; those with no folder in OUT are listed as not run.
  previous_rung: another rung's study folder: the report says how the trend claims moved."""
  if test_rain not in ('auto', *results.TEST_RAINS):
    raise ConfigError(f'test_rain must be auto, {" or ".join(results.TEST_RAINS)}; '
                      f'got {test_rain!r}.')
  points, not_run = results.load_points(out_dir)
  report_dir = StudyFolder(out_dir).report_dir(test_rain)
  report_dir.mkdir(parents=True, exist_ok=True)
  rows = results.result_rows(points)
  kind = results.choose_test_rain(points) if test_rain == 'auto' else test_rain
  chosen = [r for r in rows if r.testset == set_name(r.category, kind)]
  has_chosen = {r.point for r in chosen}
  present = {p.name for p in points} | {p['point'] for p in not_run}
  not_run += [{'point': name, 'reason': 'no results in this folder yet'}
              for name in expected if name not in present]
  num_points = len(points) + len(not_run)
  not_run += [{'point': p.name, 'reason': f'no {set_name(p.category, kind)} results'}
              for p in points if p.name not in has_chosen]
  kept, _ = results.split_converged(chosen)
  stats, skipped = _complexities(points, out_dir)
  report = Report(
      rows=rows, num_points=num_points, not_run=not_run, test_rain=kind,
      unreadable=[f'{p.name}: {f}' for p in points for f in p.unreadable],
      reference_range=results.reference_range(kept),
      not_converged=[p.gate() for p in points if p.converged is False],
      unchecked=[p.name for p in points if p.converged is None],
      little_removal=[{**p.gate(), 'why': why} for p in points if (why := p.little_removal)],
      verdicts=verdicts.claim_verdicts(chosen, stats, rows, kind),
      complexity=stats, complexity_skipped=skipped, path=report_dir / 'report.md')
  drawn = None
  if figures:
    drawn = draw_figures(report_dir, kept, rows, kind, report.reference_range, stats,
                         skipped)
    report.figures = {key: report_dir / FIGURES[key][0] for key in FIGURES}
    report.empty_figures = [key for key, ok in drawn.items() if not ok]
  with open(report_dir / 'results.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=results.FIELDS)
    writer.writeheader()
    writer.writerows(r.written() for r in rows)
  (report_dir / 'verdicts.json').write_text(json.dumps(_finite(report.summary()), indent=1))
  text = _markdown(report, points, kept, drawn)
  if previous_rung:
    text += '\n' + '\n'.join(rung_lines(rows, previous_rung)) + '\n'
  report.path.write_text(text)
  return report


def cli(out_dir, figures: bool = True, test_rain: str = 'auto',
        expected: list[str] = (), previous_rung=None) -> None:
  """`python -m jaxderain.study report --out=OUT [--test_rain=R] [--grid=G --scale=S]`:
  write the report, print the verdicts (NotFoundError when OUT holds no study). With the
  grid, its points not in OUT are listed as not run."""
  with hold(StudyFolder(out_dir).report_dir(test_rain), 'writing the report', '--out'):
    report = write_report(out_dir, figures=figures, test_rain=test_rain, expected=expected,
                          previous_rung=previous_rung)
  for verdict in report.verdicts:
    print(f'claim {verdict.claim}: {_verdict_cell(verdict)}; exploratory: '
          f'{_outcome_cell(verdict.exploratory)}; secondary agreeing: '
          f'{_agree_cell(verdict)}')
  for unreadable in report.unreadable:
    print(f'unreadable, left out: {unreadable}', file=sys.stderr)
  print(f'{len(report.not_run)} not run, {len(report.not_converged)} not converged, '
        f'{len(report.unreadable)} unreadable result files; report: {report.path}')
