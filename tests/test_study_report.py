"""Study report: rows, figures, verdicts and Markdown from hand-built sweep folders."""

import csv
import json
import math
import os
import socket

import numpy as np
import pytest
from PIL import Image

from jaxderain import errors
from jaxderain.data.testsets import short_category
from jaxderain.rain import RAIN_RANGES
from jaxderain.study import figures, report, results, statistics, verdicts
from jaxderain.workdir import hold

NS = (8, 64, 256, 1024, 30000)
# Removal share per N for each rain range: collapse points near 8, 64 and 256.
SHARES = {'small': (0.8, 0.2, 0.15, 0.12, 0.1),
          'medium': (0.8, 0.7, 0.2, 0.1, 0.1),
          'large': (0.8, 0.8, 0.7, 0.2, 0.1)}
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def falling_e_r(n):
  return 40.0 - 2.0 * math.log2(n)


def flattening_e_b(n):  # 15 at N = 8, 5.3 at 256, 5.0 at 30000
  return 5.0 + 10.0 * 2.0 ** (3 - math.log2(n))


def eval_result(testset, e_r, e_b, share, psnr=25.0, recent=True):
  """An eval JSON; with `recent`, the top level holds other (final-checkpoint) values."""
  metrics = {'E_R': e_r, 'E_B': e_b, 'psnr': psnr, 'ssim': 0.7, 'removal_share': share,
             'net_removal': share, 'over_subtraction': 0.0}
  final = {k: v + 100.0 for k, v in metrics.items()} if recent else metrics
  result = {'testset': testset, 'step': 8000, 'rain_threshold': 0.05,
            'units': 'E_R, E_B and PSNR on the 0-255 scale (fixture)', **final,
            'reference': {'identity': {'E_R': 0.0, 'E_B': 1.5, 'psnr': 20.0},
                          'perfect': {'E_R': 60.0, 'E_B': 0.0}},
            'rain_fraction': 0.1, 'num_images': 4, 'per_image': []}
  if recent:
    result['recent'] = {'steps': [4000, 6000, 8000], **metrics}
  return result


def add_point(out, arch, category, rain_range, n, seed=0, *, e_r=None, e_b=None,
              share=None, train_psnr=25.0, train_share=0.5, sets=('unseen',), extra=None,
              recent=True, evaluated=True):
  """OUT/points/<name>/ with config.json and, if evaluated, eval JSONs: `sets` of its own
  category with the given metrics (defaults: the falling curves), its train set, and
  `extra` {testset: (E_R, E_B, share)}. Returns the point's folder."""
  short = short_category(category)
  name = f'{arch}_{short}_{rain_range}_{n}_s{seed}'
  folder = out / 'points' / name
  folder.mkdir(parents=True)
  config = {'arch': arch, 'rain_range': rain_range, 'num_patches': n,
            'category': str(category), 'seed': seed, 'scale': 'cpu', 'data_dir': ''}
  (folder / 'config.json').write_text(json.dumps(config))
  if not evaluated:
    return folder
  e_r = falling_e_r(n) + 0.5 * seed if e_r is None else e_r
  e_b = flattening_e_b(n) + 0.5 * seed if e_b is None else e_b
  share = SHARES[rain_range][NS.index(n)] + 0.01 * seed if share is None else share
  results = {f'{short}_{s}': (e_r, e_b, share) for s in sets}
  results.update(extra or {})
  (folder / 'eval').mkdir()
  for testset, (er, eb, sh) in results.items():
    (folder / 'eval' / f'{testset}.json').write_text(
        json.dumps(eval_result(testset, er, eb, sh, recent=recent)))
  (folder / 'eval' / f'{short}_train.json').write_text(
      json.dumps(eval_result(f'{short}_train', 1.0, 1.0, train_share, psnr=train_psnr,
                             recent=recent)))
  return folder


def paper_like(out, e_r=falling_e_r, e_b=flattening_e_b, shares=None):
  """resnet on natural for all three ranges, unet on medium: every N, two seeds."""
  shares = shares or SHARES
  for rain_range in RAIN_RANGES:
    for seed in (0, 1):
      for i, n in enumerate(NS):
        add_point(out, 'resnet', 'natural', rain_range, n, seed, e_r=e_r(n) + 0.5 * seed,
                  e_b=e_b(n) + 0.04 * seed, share=shares[rain_range][i] + 0.01 * seed)
  for seed in (0, 1):
    for i, n in enumerate(NS):
      add_point(out, 'unet', 'natural', 'medium', n, seed, e_r=e_r(n) + 0.5 * seed,
                e_b=e_b(n) + 0.04 * seed, share=shares['medium'][i] + 0.01 * seed)


def statuses(result):
  return {v['claim']: v['status'] for v in result['verdicts']}


def assert_png(path):
  assert path.read_bytes()[:8] == PNG_SIGNATURE
  with Image.open(path) as image:
    image.verify()


@pytest.mark.reliability  # also: a result file cut short keeps the point's other rows
def test_rows_follow_the_eval_files(tmp_path):
  add_point(tmp_path, 'resnet', 'natural', 'medium', 8, e_r=12.0, e_b=3.0, share=0.5)
  add_point(tmp_path, 'unet', 'natural', 'medium', 64, e_r=7.0, e_b=2.0, share=0.25,
            recent=False, train_psnr=19.0)
  add_point(tmp_path, 'resnet', 'natural', 'small', 8, evaluated=False)
  (tmp_path / 'points' / 'broken').mkdir()
  partial = add_point(tmp_path, 'unet', 'natural', 'small', 8)
  (partial / 'eval' / 'natural_unseen.json').write_text('{"testset": "natu')  # mid-write
  result = report.write_report(tmp_path, figures=False)

  with open(tmp_path / 'report' / 'results.csv', newline='') as f:
    csv_rows = list(csv.DictReader(f))
  json_rows = json.loads((tmp_path / 'report' / 'results.json').read_text())
  assert tuple(csv_rows[0]) == results.FIELDS and tuple(json_rows[0]) == results.FIELDS
  assert len(csv_rows) == len(json_rows) == len(result['rows']) == 5  # 2 points x 2 sets + 1
  by_key = {(r['point'], r['testset']): r for r in json_rows}
  recent = by_key[('resnet_natural_medium_8_s0', 'natural_unseen')]
  assert recent == {
      'point': 'resnet_natural_medium_8_s0', 'arch': 'resnet', 'category': 'natural',
      'rain_range': 'medium', 'num_patches': 8, 'seed': 0, 'scale': 'cpu',
      'testset': 'natural_unseen', 'step': 8000, 'E_R': 12.0, 'E_B': 3.0, 'psnr': 25.0,
      'ssim': 0.7, 'removal_share': 0.5, 'net_removal': 0.5, 'over_subtraction': 0.0,
      'identity_psnr': 20.0, 'identity_E_B': 1.5, 'perfect_E_R': 60.0, 'converged': True}
  old = by_key[('unet_natural_medium_64_s0', 'natural_unseen')]  # no `recent`: top level
  assert (old['E_R'], old['converged']) == (7.0, False)
  assert csv_rows[0]['converged'] in ('True', 'False')
  assert result['num_points'] == 5
  assert result['not_run'][:2] == [
      {'point': 'broken', 'reason': 'no config.json'},
      {'point': 'resnet_natural_small_8_s0', 'reason': 'no eval results'}]
  assert result['not_run'][2] == {'point': 'unet_natural_small_8_s0',
                                  'reason': 'no natural_unseen results'}
  assert result['unreadable'][0].startswith('unet_natural_small_8_s0: eval/natural_unseen.json')
  assert {r['testset'] for r in result['rows'] if r['point'] == 'unet_natural_small_8_s0'} == {
      'natural_train'}  # its readable result is kept
  assert [p['point'] for p in result['not_converged']] == ['unet_natural_medium_64_s0']
  assert result['figures'] == {} and result['test_rain'] == 'unseen'
  summary = json.loads((tmp_path / 'report' / 'verdicts.json').read_text())
  assert [v['status'] for v in summary['verdicts']] == [statistics.NOT_RUN] * 6
  text = result['report'].read_text()
  assert 'Figures were not drawn' in text and 'broken: no config.json' in text


def test_points_of_the_grid_not_there_or_still_running_are_listed_as_not_run(tmp_path):
  add_point(tmp_path, 'resnet', 'natural', 'medium', 8)
  add_point(tmp_path, 'resnet', 'natural', 'small', 8, evaluated=False)
  running = add_point(tmp_path, 'resnet', 'natural', 'large', 8)  # evaluation half done
  expected = ['resnet_natural_medium_8_s0', 'resnet_natural_small_8_s0', 'unet_medium_8_s0']
  with hold(running, 'evaluation'):
    result = report.write_report(tmp_path, figures=False, expected=expected)
  assert result['num_points'] == 4
  assert result['not_run'] == [
      {'point': 'resnet_natural_large_8_s0', 'reason': 'still running (evaluation by PID '
                                                       f'{os.getpid()} on {socket.gethostname()})'},
      {'point': 'resnet_natural_small_8_s0', 'reason': 'no eval results'},
      {'point': 'unet_medium_8_s0', 'reason': 'no results in this folder yet'}]
  assert {r['point'] for r in result['rows']} == {'resnet_natural_medium_8_s0'}
  assert '- unet_medium_8_s0: no results in this folder yet' in result['report'].read_text()


def test_compute_and_machines_come_from_the_sweeps_done_json(tmp_path):
  def timed(n, seconds, cpu, **extra):
    folder = add_point(tmp_path, 'resnet', 'natural', 'medium', n)
    (folder / 'done.json').write_text(json.dumps(
        {'arg': 'x', 'seconds': seconds, 'results': [], 'device': 'cpu', 'cpu': cpu, **extra}))
  timed(8, 100.0, 'AMD EPYC')  # written before done.json said where a run resumed
  timed(64, 300.0, 'Xeon', resumed_from_step=2000)
  timed(256, 200.0, 'Xeon', resumed_from_step=0)
  add_point(tmp_path, 'resnet', 'natural', 'medium', 1024)  # not timed by a sweep
  text = report.write_report(tmp_path, figures=False)['report'].read_text()
  assert ('Compute: 10.0 min of training and evaluation over 3 timed points (200 s a point); '
          '1 of them resumed from a checkpoint and timed from there only; 1 do not record '
          'whether they resumed.') in text
  assert 'Machines: 2 points on cpu (Xeon); 1 points on cpu (AMD EPYC).' in text


def by_label(verdict):
  return {t['label']: t for t in verdict['tests']}


def test_paper_like_grid_passes_with_its_statistics(tmp_path):
  paper_like(tmp_path)
  result = report.write_report(tmp_path)
  assert statuses(result) == {1: 'PASS', 2: 'PASS', 3: 'PASS', 4: 'NOT RUN', 5: 'PASS',
                              'distance': 'NOT RUN'}
  falls, collapse, flattens, _, tradeoff, _ = (by_label(v) for v in result['verdicts'])
  assert set(falls) == {'resnet/natural/small', 'resnet/natural/medium',
                        'resnet/natural/large', 'unet/natural/medium'}
  medium = falls['resnet/natural/medium']
  x = np.log2(NS)
  shares = np.array(SHARES['medium']) + 0.005  # seed means
  assert medium['estimate'] == pytest.approx(np.polyfit(x, shares, 1)[0])
  assert medium['high'] < 0 and medium['df'] == 15  # 3 ranges x 5 N, 2 seeds each
  assert medium['E_R']['estimate'] == pytest.approx(-2.0)
  assert list(collapse) == ['resnet/natural: small -> medium', 'resnet/natural: medium -> large']
  assert all(t['status'] == 'PASS' and t['low'] > 0 for t in collapse.values())
  assert 'collapse N 34 -> 122' in collapse['resnet/natural: small -> medium']['statistic']
  medium = flattens['resnet/natural/medium']
  expected = ((flattening_e_b(256) - flattening_e_b(30000)) /
              (flattening_e_b(8) - flattening_e_b(256)))
  assert medium['flattening']['estimate'] == pytest.approx(expected)
  assert medium['status'] == 'PASS'
  assert len(tradeoff) == 9 + 3 and all(t['status'] == 'PASS' for t in tradeoff.values())
  resnet = tradeoff['resnet/natural: N=64 medium vs N=30000 medium']
  assert resnet['estimate'] == pytest.approx(SHARES['medium'][1] - SHARES['medium'][4])
  assert resnet['E_B']['low'] > 0 and resnet['status'] == 'PASS'
  assert result['complexity']['natural']['patches'] == 256
  assert result['reference_range'] == 'medium'

  assert set(result['figures']) == set(figures.FIGURES)
  for path in result['figures'].values():
    assert_png(path)
  assert sorted(result['empty_figures']) == ['10', 'distance']
  text = result['report'].read_text()
  for name, title in figures.FIGURES.values():
    assert f'![{title}' in text and f']({name})' in text
  assert '| 1 | Removal falls as N grows' in text and '**PASS**' in text
  assert [(verdicts.reference_test(v) or {}).get('label') for v in result['verdicts']] == [
      'resnet/natural/medium', 'resnet/natural: small -> medium', 'resnet/natural/medium',
      None, 'resnet/natural: N=8 medium vs N=30000 medium', None]
  few = 'resnet/natural: N=8 medium vs N=30000 medium'
  assert f'**PASS** | {few}: {tradeoff[few]["statistic"]} (PASS) |' in text
  assert '### Claim 2: PASS' in text and 'Points used (30)' in text
  assert ('| resnet | natural | medium | 8 | 2 | 34.25 | 0.805 | 0.000 | 15.02 | 25.00 | '
          '0.700 |') in text
  assert 'Units: E_R, E_B and PSNR on the 0-255 scale (fixture).' in text


def test_rising_and_unflattened_curves_fail(tmp_path):
  rising = {k: tuple(reversed(v)) for k, v in SHARES.items()}
  paper_like(tmp_path / 'rising', e_r=lambda n: 20.0 + 2.0 * math.log2(n),
             e_b=lambda n: 15.0 - 0.6 * math.log2(n), shares=rising)
  result = report.write_report(tmp_path / 'rising', figures=False)
  assert {k: statuses(result)[k] for k in (1, 3, 5)} == {1: 'FAIL', 3: 'FAIL', 5: 'FAIL'}
  falls, _, flattens, _, tradeoff, _ = (by_label(v) for v in result['verdicts'])
  assert falls['resnet/natural/small']['low'] > 0
  assert flattens['resnet/natural/small']['flattening']['low'] > 0.25
  assert tradeoff['resnet/natural: N=8 small vs N=30000 medium']['status'] == 'FAIL'
  assert '**FAIL**' in result['report'].read_text()

  swapped = {'small': SHARES['large'], 'medium': SHARES['medium'], 'large': SHARES['small']}
  paper_like(tmp_path / 'swapped', shares=swapped)  # collapse order reversed
  result = report.write_report(tmp_path / 'swapped', figures=False)
  assert statuses(result)[2] == 'FAIL' and statuses(result)[1] == 'PASS'


def test_not_converged_points_are_excluded_and_listed(tmp_path):
  def grid_with_outlier(out, train_psnr):
    paper_like(out)
    add_point(out, 'resnet', 'natural', 'medium', 512, e_r=0.0, e_b=0.0, share=-0.9,
              train_psnr=train_psnr)  # damages more than it removes

  grid_with_outlier(tmp_path / 'gated', train_psnr=19.5)  # identity: 20 dB
  result = report.write_report(tmp_path / 'gated', figures=False)
  name = 'resnet_natural_medium_512_s0'
  assert statuses(result)[5] == 'PASS'
  assert all(result['verdicts'][i]['left_out'][name] == 'not converged' for i in (0, 1, 4))
  assert name not in result['verdicts'][4]['points_used']
  assert result['not_converged'] == [{'point': name, 'psnr': 19.5, 'identity_psnr': 20.0,
                                      'net_removal': 0.5}]
  assert {r['converged'] for r in result['rows'] if r['point'] == name} == {False}
  text = result['report'].read_text()
  assert f'- {name}: train PSNR 19.50 <= identity 20.00' in text
  assert f'not converged ({name})' in text
  assert '| resnet | natural | medium | 512 |' not in text  # nor in Table 2

  grid_with_outlier(tmp_path / 'ungated', train_psnr=21.0)  # the same point, converged
  result = report.write_report(tmp_path / 'ungated', figures=False)
  assert statuses(result)[5] == 'FAIL' and result['little_removal'] == []


def test_models_that_remove_little_of_their_training_rain_are_listed_and_kept(tmp_path):
  paper_like(tmp_path)
  name = add_point(tmp_path, 'resnet', 'natural', 'medium', 256, seed=2, train_psnr=20.0003,
                   train_share=4e-5).name  # the identity (20 dB) up to rounding
  darkening = add_point(tmp_path, 'resnet', 'natural', 'medium', 256, seed=3,
                        train_psnr=27.0)  # removes rain, and darkens rain pixels more
  train_json = darkening / 'eval' / 'natural_train.json'
  train = json.loads(train_json.read_text())
  train['recent'].update(removal_share=0.85, net_removal=-0.25, over_subtraction=0.96)
  train_json.write_text(json.dumps(train))
  result = report.write_report(tmp_path, figures=False)
  assert result['little_removal'] == [
      {'point': name, 'psnr': 20.0003, 'identity_psnr': 20.0, 'net_removal': 4e-5,
       'why': 'near the identity'},
      {'point': darkening.name, 'psnr': 27.0, 'identity_psnr': 20.0, 'net_removal': -0.25,
       'why': 'over-subtracting'}]
  assert result['not_converged'] == [] and name in result['verdicts'][0]['points_used']
  text = result['report'].read_text()
  assert '0 not converged, 2 removing little of their own training rain' in text
  assert (f'- {name}: near the identity: net removal 4e-05, train PSNR 20.0003 against the '
          'identity\'s 20.0000') in text
  assert f'- {darkening.name}: over-subtracting: net removal -0.25' in text


def test_a_claim_left_without_converged_points_is_not_converged(tmp_path):
  for n in (8, 64, 256):
    for seed in (0, 1):
      add_point(tmp_path, 'resnet', 'natural', 'medium', n, seed,
                train_psnr=15.0 if n == 64 else 25.0)
  result = report.write_report(tmp_path, figures=False)
  assert statuses(result)[1] == statistics.NOT_CONVERGED  # 2 of 3 N left
  assert statuses(result)[5] == statistics.NOT_RUN  # no baseline above 512 either way


def test_table2_objectives_are_compared_with_the_largest_n_baseline(tmp_path):
  # Table 2's grid: the baseline (30000, medium) against fewer backgrounds and wider rain.
  objectives = {(30000, 'medium'): (10.0, 3.0), (64, 'medium'): (20.0, 5.0),
                (512, 'large'): (25.0, 4.0), (256, 'large'): (30.0, 4.5),
                (128, 'large'): (35.0, 6.0)}
  for arch in ('resnet', 'spdnet'):
    seeds = (0, 1) if arch == 'resnet' else (0,)
    for (n, rain_range), (e_r, e_b) in objectives.items():
      share = e_r / 100
      if arch == 'spdnet' and n == 512:
        share = 0.05  # removes less rain than its baseline
      for seed in seeds:
        add_point(tmp_path, arch, 'natural', rain_range, n, seed, e_r=e_r + 0.1 * seed,
                  e_b=e_b + 0.1 * seed, share=share + 0.001 * seed)
  result = report.write_report(tmp_path, figures=False)
  verdict = result['verdicts'][4]
  tests = by_label(verdict)
  assert len(tests) == 8
  assert all(tests[f'resnet/natural: N={n} {r} vs N=30000 medium']['status'] == 'PASS'
             for n, r in objectives if n <= 512)
  spdnet = tests['spdnet/natural: N=512 large vs N=30000 medium']  # one seed: no interval
  assert spdnet['estimate'] == pytest.approx(0.05 - 0.1) and spdnet['status'] == 'INCONCLUSIVE'
  assert verdict['status'] == 'INCONCLUSIVE'
  text = result['report'].read_text()
  assert '| resnet | natural | large | 512 | 2 | 25.05 | 0.251 |' in text
  assert '| spdnet | natural | medium | 30000 | 1 | 10.00 | 0.100 |' in text
  assert 'no interval: 1 seed a point' in text


def test_flattening_interpolates_e_b_at_256_off_grid(tmp_path):
  # The claims grid's Ns: 256 lies halfway (in log2) between 128 and 512.
  for seed in (0, 1):
    for n, e_b in zip((8, 32, 128, 512, 4096), (20.0, 12.0, 8.0, 6.0, 5.5)):
      add_point(tmp_path, 'resnet', 'natural', 'medium', n, seed, e_r=falling_e_r(n),
                e_b=e_b + 0.02 * seed, share=0.5)
  verdict = report.write_report(tmp_path, figures=False)['verdicts'][2]
  test = verdict['tests'][0]
  assert test['flattening']['estimate'] == pytest.approx(1.5 / 13.0)
  assert test['status'] == verdict['status'] == 'PASS'


def add_shifted_point(out, n, seed, slope_per_10_degrees, rain_range='medium'):
  """A point whose net removal on the angle sets falls by `slope_per_10_degrees` per 10
  degrees beyond its training range (flat inside)."""
  edge = {'small': 5, 'medium': 30, 'large': 70}[rain_range]
  extra = {}
  for angle in range(0, 100, 10):
    share = 0.6 - slope_per_10_degrees * max(angle - edge, 0) / 10 + 0.01 * seed
    extra[f'natural_angle{angle}'] = (20.0, 5.0, share)
  add_point(out, 'resnet', 'natural', rain_range, n, seed, share=0.5, extra=extra)


def test_distance_gap_grows_and_curves_separate(tmp_path):
  for seed in (0, 1):
    add_shifted_point(tmp_path, 8, seed, 0.02)  # few backgrounds: keeps removing
    add_shifted_point(tmp_path, 128, seed, 0.05)
    add_shifted_point(tmp_path, 4096, seed, 0.08)  # many: collapses beyond the range
  result = report.write_report(tmp_path)
  verdict = result['verdicts'][5]
  assert verdict['claim'] == 'distance' and verdict['status'] == 'PASS'
  (test,) = verdict['tests']
  assert test['label'] == 'resnet/natural/medium: N=8 vs N=4096'
  assert test['estimate'] == pytest.approx(0.006)  # per degree: (0.08 - 0.02) / 10
  assert test['offsets'] == [0, 10, 20, 30, 40, 50, 60]
  assert test['separates_at'] == 10  # equal at the range's edge, apart from 10 degrees on
  assert 'distance' not in result['empty_figures']
  assert_png(result['figures']['distance'])

  for seed in (0, 1):  # the same gap everywhere: no growth
    add_shifted_point(tmp_path / 'flat', 8, seed, 0.05)
    add_shifted_point(tmp_path / 'flat', 4096, seed, 0.05)
  verdict = report.write_report(tmp_path / 'flat', figures=False)['verdicts'][5]
  assert verdict['tests'][0]['separates_at'] is None
  assert verdict['status'] == 'INCONCLUSIVE'


def test_missing_grids_are_not_run_and_still_drawn(tmp_path):
  (tmp_path / 'empty' / 'points').mkdir(parents=True)
  result = report.write_report(tmp_path / 'empty')
  assert set(statuses(result).values()) == {statistics.NOT_RUN}
  assert sorted(result['empty_figures']) == sorted(figures.FIGURES)
  for path in result['figures'].values():
    assert_png(path)
  text = result['report'].read_text()
  assert text.count('(not run)') == len(figures.FIGURES) and '## Table 2' in text

  for n in (8, 30000):  # two values of N are no trend; no 3 ranges; no baseline pair
    add_point(tmp_path / 'two', 'resnet', 'natural', 'medium', n)
  result = report.write_report(tmp_path / 'two', figures=False)
  assert statuses(result) == {1: 'NOT RUN', 2: 'NOT RUN', 3: 'NOT RUN', 4: 'NOT RUN',
                              5: 'INCONCLUSIVE', 'distance': 'NOT RUN'}
  assert result['verdicts'][0]['left_out'] == {
      p: 'its curve has fewer than 3 values of N'
      for p in ('resnet_natural_medium_30000_s0', 'resnet_natural_medium_8_s0')}


def test_missing_study_folder_is_a_user_error(tmp_path):
  with pytest.raises(errors.NotFoundError, match='points does not exist'):
    report.write_report(tmp_path)


def image_folder(folder, textured):
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  for i in range(4):
    image = (rng.integers(0, 256, (80, 80, 3)) if textured
             else np.full((80, 80, 3), 40 * i + 20))
    Image.fromarray(image.astype(np.uint8)).save(folder / f'{i}.png')
  return folder


@pytest.mark.parametrize('celeba_textured', [True, False])
def test_complexity_order_from_image_folders(tmp_path, celeba_textured, capsys):
  celeba = image_folder(tmp_path / 'data' / 'celeba', textured=celeba_textured)
  urban = image_folder(tmp_path / 'data' / 'urban100', textured=not celeba_textured)
  out = tmp_path / 'out'
  for category in (celeba, urban, 'manga109'):  # manga109: nothing to load
    add_point(out, 'resnet', category, 'medium', 8)
  report.cli(str(out))
  result = json.loads((out / 'report' / 'verdicts.json').read_text())
  complexity = result['complexity']
  assert set(complexity) == {'celeba', 'urban100', 'natural'}  # natural: embedded
  flat = 'urban100' if celeba_textured else 'celeba'
  assert complexity[flat] == {'mean': 0.0, 'std': 0.0, 'patches': 256}
  verdict = result['verdicts'][3]
  assert verdict['status'] == ('PASS' if celeba_textured else 'FAIL')
  assert 'celeba > urban100' in [t['label'] for t in verdict['tests']]
  assert json.loads((out / 'complexity.json').read_text()) == complexity  # kept for reuse
  assert 'manga109' in result['complexity_skipped']
  text = (out / 'report' / 'report.md').read_text()
  assert '- manga109: Unknown background category' in text
  assert f'claim 4: {verdict["status"]}' in capsys.readouterr().out
  assert_png(out / 'report' / 'figure6b_complexity.png')


def test_rain100l_cross_category_and_strips(tmp_path):
  rain100l = {'natural_rain100L': (30.0, 9.0, 0.4)}
  low = add_point(tmp_path, 'resnet', 'natural', 'medium', 8, sets=('unseen', 'rain100L'),
                  extra=rain100l)
  high = add_point(tmp_path, 'resnet', 'natural', 'medium', 30000,
                   sets=('unseen', 'rain100L'), extra={'natural_rain100L': (10.0, 4.0, 0.1)})
  add_point(tmp_path, 'resnet', 'celeba', 'medium', 8, sets=('unseen', 'rain100L'),
            extra={'natural_unseen': (1.0, 2.0, 0.0), **rain100l})
  for folder in (low, high):
    Image.new('RGB', (12, 4)).save(folder / 'eval' / 'natural_rain100L.png')
  result = report.write_report(tmp_path)
  assert result['test_rain'] == 'rain100L'
  assert '10' not in result['empty_figures']  # celeba's model was tested on natural
  assert statuses(result)[5] == 'INCONCLUSIVE'  # 1 seed a point: no interval
  text = result['report'].read_text()
  assert 'Test set: `<category>_rain100L`' in text
  assert '| resnet | natural | medium | 8 | 1 | 30.00 | 0.400 | 0.000 | 9.00 |' in text
  for folder in (low, high):
    assert f'](qualitative/{folder.name}.png)' in text
    assert (tmp_path / 'report' / 'qualitative' / f'{folder.name}.png').is_file()
  assert 'celeba' in result['complexity_skipped']

  forced = report.write_report(tmp_path, figures=False, test_rain='unseen')
  assert forced['test_rain'] == 'unseen'  # beside the automatic report, not over it
  assert forced['report'] == tmp_path / 'report_unseen' / 'report.md'
  assert 'Test set: `<category>_unseen`' in forced['report'].read_text()
  assert 'Test set: `<category>_rain100L`' in result['report'].read_text()
  (high / 'eval' / 'natural_rain100L.json').unlink()
  assert report.write_report(tmp_path, figures=False)['test_rain'] == 'unseen'
  with pytest.raises(ValueError, match='test_rain must be'):
    report.write_report(tmp_path, test_rain='rain100H')


def test_gate_ignores_train_images_that_drew_no_rain(tmp_path):
  folder = add_point(tmp_path, 'resnet', 'natural', 'medium', 8)
  result = eval_result('natural_train', 60.0, 3.0, 0.9, psnr=35.0)
  result['reference']['identity']['psnr'] = math.inf  # one image drew no rain
  result['per_image'] = [
      {'psnr': 30.0, 'identity_psnr': 20.0}, {'psnr': 40.0, 'identity_psnr': math.inf}]
  (folder / 'eval' / 'natural_train.json').write_text(json.dumps(result))
  point = results.load_points(tmp_path)[0][0]
  assert results.gate_psnrs(point.evals['natural_train']) == (30.0, 20.0)
  assert point.converged
  result['per_image'][0]['psnr'] = 19.0  # worse than the identity where there is rain
  (folder / 'eval' / 'natural_train.json').write_text(json.dumps(result))
  assert results.load_points(tmp_path)[0][0].converged is False
