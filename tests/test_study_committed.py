"""The committed study results and the pre-registration: what the reports say, the seeds
the power analysis asks for, how unseen the test rain is."""

import json
import math
import pathlib

import shutil
import subprocess
import sys

from jaxderain.study import folders, grids, primary, report, results, unseen

STUDIES = pathlib.Path(__file__).resolve().parents[1] / 'docs' / 'studies'


def _intervals(tree):
  """Every {'estimate', 'low', 'high'} record in a verdicts.json tree."""
  if isinstance(tree, dict):
    if {'estimate', 'low', 'high'} <= set(tree):
      yield tree
    for value in tree.values():
      yield from _intervals(value)
  elif isinstance(tree, list):
    for value in tree:
      yield from _intervals(value)


def test_no_committed_interval_excludes_its_own_estimate():
  files = sorted(STUDIES.glob('*/report*/verdicts.json'))
  assert files, 'no committed report'
  checked = 0
  for path in files:
    for record in _intervals(json.loads(path.read_text())['verdicts']):
      low, high, estimate = (math.nan if record[k] is None else record[k]
                             for k in ('low', 'high', 'estimate'))
      if math.isnan(estimate) or math.isnan(low):
        continue  # no interval (JSON keeps infinite bounds as None: no bound)
      assert low <= estimate + 1e-9 and estimate <= high + 1e-9, (path, record)
      checked += 1
  assert checked > 50


def test_the_confirmatory_seeds_are_what_the_power_analysis_asks():
  points, _ = results.load_points(STUDIES / 'cpu')
  table = primary.power(results.result_rows(points))
  needed = primary.seeds_needed(table)
  assert set(needed) == {t.claim for t in primary.TESTS}
  assert needed[2] == primary.MAX_SEEDS and next(
      r for r in table if r.claim == 2).seeds is None  # claim 2 needs more than 10
  assert len(primary.CONFIRMATORY_SEEDS) == max(needed.values())
  assert len(grids.grid_points('confirm', 'cpu')) == 2 * 5 * max(needed.values())
  assert primary.TREND_SEEDS >= 5 and primary.TREND_SEEDS >= max(
      needed[c] for c in primary.TREND_CLAIMS)


def test_the_power_analysis_is_printed_by_a_command():
  printed = subprocess.run(
      [sys.executable, '-m', 'jaxderain.study', 'plan', '--power', f'--out={STUDIES / "cpu"}'],
      capture_output=True, text=True, check=True).stdout
  assert '| 2 | collapse shift in log2 N |' in printed and 'more than 10: run 10' in printed
  assert printed.strip().endswith('seeds a point by claim: 1: 4, 2: 10, 3: 6, 5: 5, distance: 8')


def test_the_unseen_rain_is_measured_outside_the_small_and_medium_ranges_only():
  table = unseen.shares('', scale='smoke', training_layers=24)  # no data_dir: no Rain100L
  measured = table['natural_unseen']
  assert measured['small']['any'] > 0.9 and measured['medium']['any'] >= unseen.UNSEEN_SHARE
  assert measured['large']['any'] < 0.1
  beyond = [table[f'natural_angle{a}']['medium']['any'] for a in (50, 60, 70, 80, 90)]
  assert min(beyond) >= unseen.UNSEEN_SHARE > table['natural_angle10']['medium']['any']
  lines = unseen.lines(table)
  assert lines[0].startswith('| test set | streaks | outside small |')
  assert any(line.startswith('| natural_unseen |') and '**' in line for line in lines)


def test_a_report_reads_the_same_from_packed_results_and_from_eval_files(tmp_path):
  study = folders.StudyFolder(tmp_path / 'study')
  for name in sorted(p.name for p in folders.StudyFolder(STUDIES / 'cpu').points()
                     if p.name.startswith('resnet_medium_') and p.done_record_or_none())[:12]:
    source = folders.StudyFolder(STUDIES / 'cpu').point(name)
    target = study.point(name)
    target.path.mkdir(parents=True)
    for file in ('config.json', 'done.json', 'results.json'):
      shutil.copy(source.path / file, target.path / file)
  shutil.copy(STUDIES / 'cpu' / 'complexity.json', study.complexity_file)  # measured once
  packed = report.write_report(study.path, figures=False, test_rain='unseen')
  saved = {f: (study.report_dir('unseen') / f).read_text() for f in ('verdicts.json',
                                                                     'results.csv')}
  for point in study.points():  # the eval files the packed results came from
    results, unreadable = point.read_results()
    assert results and not unreadable and point.is_done()
    point.eval_dir.mkdir()
    for name, result in results.items():
      (point.eval_dir / f'{name}.json').write_text(json.dumps(result))
    point.results_file.unlink()
  assert all(p.is_done() for p in study.points())
  unpacked = report.write_report(study.path, figures=False, test_rain='unseen')
  assert [v.status for v in unpacked.verdicts] == [v.status for v in packed.verdicts]
  for name, text in saved.items():
    assert (study.report_dir('unseen') / name).read_text() == text, name
  assert all(p.pack() for p in study.points())  # and back: the same file
  assert all(json.loads(p.results_file.read_text()) == json.loads(
      (STUDIES / 'cpu' / 'points' / p.name / 'results.json').read_text())
             for p in study.points())
