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
from jaxderain.study import figures, primary, report, results, statistics
from jaxderain.workdir import hold

NS = primary.NUM_PATCHES  # 8, 32, 128, 512, 4096
EXPLORATORY, CONFIRMATORY = (0, 1), primary.CONFIRMATORY_SEEDS[:3]
# Removal share per N for each rain range: collapse points near 8, 32 and 128.
SHARES = {'small': (0.8, 0.2, 0.15, 0.12, 0.1),
          'medium': (0.8, 0.7, 0.2, 0.1, 0.1),
          'large': (0.8, 0.8, 0.7, 0.2, 0.1)}
IMAGES = np.array([-0.02, -0.01, 0.01, 0.02])  # every point's per-image offsets
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def falling_e_r(n):
  return 40.0 - 2.0 * math.log2(n)


def flattening_e_b(n):  # 15 at N = 8, 5.4 at 256, 5.0 at 4096
  return 5.0 + 10.0 * 2.0 ** (3 - math.log2(n))


def eval_result(testset, e_r, e_b, share, psnr=25.0, recent=True):
  """An eval JSON; with `recent`, the top level holds other (final-checkpoint) values.
  Its per-image values are the metrics plus IMAGES (shared by every point)."""
  metrics = {'E_R': e_r, 'E_B': e_b, 'psnr': psnr, 'ssim': 0.7, 'removal_share': share,
             'net_removal': share, 'over_subtraction': 0.0}
  final = {k: v + 100.0 for k, v in metrics.items()} if recent else metrics
  per_image = [{**{k: v + offset for k, v in metrics.items()}, 'identity_psnr': 20.0}
               for offset in IMAGES]
  result = {'testset': testset, 'step': 8000, 'rain_threshold': 0.05,
            'units': 'E_R, E_B and PSNR on the 0-255 scale (fixture)', **final,
            'reference': {'identity': {'E_R': 0.0, 'E_B': 1.5, 'psnr': 20.0},
                          'perfect': {'E_R': 60.0, 'E_B': 0.0}},
            'rain_fraction': 0.1, 'num_images': len(IMAGES), 'per_image': per_image}
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
  train = eval_result(f'{short}_train', 1.0, 1.0, train_share, psnr=train_psnr, recent=recent)
  (folder / 'eval' / f'{short}_train.json').write_text(json.dumps(train))
  return folder


def paper_like(out, e_r=falling_e_r, e_b=flattening_e_b, shares=None,
               seeds=EXPLORATORY + CONFIRMATORY, distance=(0.02, 0.08)):
  """resnet on natural for all three ranges, unet on medium: every N, the given seeds
  (exploratory and confirmatory). The fewest and most backgrounds of resnet's medium
  range (and N = 128, for the figure) also have the angle-shifted rains, their net
  removal falling by `distance` (N = 8, 4096; 128 between) per 10 degrees beyond the
  range."""
  shares = shares or SHARES
  for seed in seeds:
    noise = 0.01 * (seed % 3)
    for rain_range in RAIN_RANGES:
      for i, n in enumerate(NS):
        extra = None
        if rain_range == 'medium' and n in (NS[0], NS[2], NS[-1]):
          slope = {NS[0]: distance[0], NS[2]: np.mean(distance), NS[-1]: distance[1]}[n]
          extra = {f'natural_angle{a}': (20.0, 5.0, 0.6 - slope * max(a - 30, 0) / 10 + noise)
                   for a in range(0, 100, 10)}
        add_point(out, 'resnet', 'natural', rain_range, n, seed, e_r=e_r(n) + 50 * noise,
                  e_b=e_b(n) + 4 * noise, share=shares[rain_range][i] + noise, extra=extra)
    if seed in EXPLORATORY:
      for i, n in enumerate(NS):
        add_point(out, 'unet', 'natural', 'medium', n, seed, e_r=e_r(n) + 50 * noise,
                  e_b=e_b(n) + 4 * noise, share=shares['medium'][i] + noise)


def statuses(result):
  return {v.claim: v.status for v in result.verdicts}


def assert_png(path):
  assert path.read_bytes()[:8] == PNG_SIGNATURE
  with Image.open(path) as image:
    image.verify()


@pytest.mark.reliability  # also: a result file cut short keeps the point's other rows
def test_rows_follow_the_eval_files(tmp_path):
  add_point(tmp_path, 'resnet', 'natural', 'medium', 8, e_r=12.0, e_b=3.0, share=0.5)
  add_point(tmp_path, 'unet', 'natural', 'medium', 32, e_r=7.0, e_b=2.0, share=0.25,
            recent=False, train_psnr=19.0)
  add_point(tmp_path, 'resnet', 'natural', 'small', 8, evaluated=False)
  (tmp_path / 'points' / 'broken').mkdir()
  partial = add_point(tmp_path, 'unet', 'natural', 'small', 8)
  (partial / 'eval' / 'natural_unseen.json').write_text('{"testset": "natu')  # mid-write
  result = report.write_report(tmp_path, figures=False)

  with open(tmp_path / 'report' / 'results.csv', newline='') as f:
    csv_rows = list(csv.DictReader(f))
  written = [r.written() for r in result.rows]
  assert tuple(csv_rows[0]) == results.FIELDS and tuple(written[0]) == results.FIELDS
  assert len(csv_rows) == len(result.rows) == 5  # 2 points x 2 sets + 1
  assert csv_rows == [{k: '' if v is None else str(v) for k, v in r.items()} for r in written]
  by_key = {(r['point'], r['testset']): r for r in written}
  recent = by_key[('resnet_natural_medium_8_s0', 'natural_unseen')]
  assert recent == {
      'point': 'resnet_natural_medium_8_s0', 'arch': 'resnet', 'category': 'natural',
      'rain_range': 'medium', 'num_patches': 8, 'seed': 0, 'scale': 'cpu',
      'testset': 'natural_unseen', 'step': 8000, 'E_R': 12.0, 'E_B': 3.0, 'psnr': 25.0,
      'ssim': 0.7, 'removal_share': 0.5, 'net_removal': 0.5, 'over_subtraction': 0.0,
      'identity_psnr': 20.0, 'identity_E_B': 1.5, 'perfect_E_R': 60.0, 'converged': True}
  old = by_key[('unet_natural_medium_32_s0', 'natural_unseen')]  # no `recent`: top level
  assert (old['E_R'], old['converged']) == (7.0, False)
  assert csv_rows[0]['converged'] in ('True', 'False')
  assert result.num_points == 5
  assert result.not_run[:2] == [
      {'point': 'broken', 'reason': 'no config.json'},
      {'point': 'resnet_natural_small_8_s0', 'reason': 'no eval results'}]
  assert result.not_run[2] == {'point': 'unet_natural_small_8_s0',
                                  'reason': 'no natural_unseen results'}
  assert result.unreadable[0].startswith('unet_natural_small_8_s0: eval/natural_unseen.json')
  assert {r.testset for r in result.rows if r.point == 'unet_natural_small_8_s0'} == {
      'natural_train'}  # its readable result is kept
  assert [p['point'] for p in result.not_converged] == ['unet_natural_medium_32_s0']
  assert result.figures == {} and result.test_rain == 'unseen'
  summary = json.loads((tmp_path / 'report' / 'verdicts.json').read_text())
  assert [v['status'] for v in summary['verdicts']] == [statistics.NOT_RUN] * 6
  text = result.path.read_text()
  assert 'Figures were not drawn' in text and 'broken: no config.json' in text


def test_points_of_the_grid_not_there_or_still_running_are_listed_as_not_run(tmp_path):
  add_point(tmp_path, 'resnet', 'natural', 'medium', 8)
  add_point(tmp_path, 'resnet', 'natural', 'small', 8, evaluated=False)
  running = add_point(tmp_path, 'resnet', 'natural', 'large', 8)  # evaluation half done
  expected = ['resnet_natural_medium_8_s0', 'resnet_natural_small_8_s0', 'unet_medium_8_s0']
  with hold(running, 'evaluation'):
    result = report.write_report(tmp_path, figures=False, expected=expected)
  assert result.num_points == 4
  assert result.not_run == [
      {'point': 'resnet_natural_large_8_s0', 'reason': 'still running (evaluation by PID '
                                                       f'{os.getpid()} on {socket.gethostname()})'},
      {'point': 'resnet_natural_small_8_s0', 'reason': 'no eval results'},
      {'point': 'unet_medium_8_s0', 'reason': 'no results in this folder yet'}]
  assert {r.point for r in result.rows} == {'resnet_natural_medium_8_s0'}
  assert '- unet_medium_8_s0: no results in this folder yet' in result.path.read_text()


def test_compute_and_machines_come_from_the_sweeps_done_json(tmp_path):
  def timed(n, seconds, cpu, **extra):
    folder = add_point(tmp_path, 'resnet', 'natural', 'medium', n)
    (folder / 'done.json').write_text(json.dumps(
        {'arg': 'x', 'seconds': seconds, 'results': [], 'device': 'cpu', 'cpu': cpu, **extra}))
  timed(8, 100.0, 'AMD EPYC')  # written before done.json said where a run resumed
  timed(32, 300.0, 'Xeon', resumed_from_step=2000)
  timed(128, 200.0, 'Xeon', resumed_from_step=0)
  add_point(tmp_path, 'resnet', 'natural', 'medium', 512)  # not timed by a sweep
  text = report.write_report(tmp_path, figures=False).path.read_text()
  assert ('Compute: 10.0 min of training and evaluation over 3 timed points (200 s a point); '
          '1 of them resumed from a checkpoint and timed from there only; 1 do not record '
          'whether they resumed.') in text
  assert 'Machines: 2 points on cpu (Xeon); 1 points on cpu (AMD EPYC).' in text


def secondary(verdict):
  return {t.label: t for t in verdict.secondary}


def points_used(verdict):
  return verdict.points_used()


def test_paper_like_grid_passes_its_primary_tests(tmp_path):
  paper_like(tmp_path)
  result = report.write_report(tmp_path)
  assert statuses(result) == {1: 'PASS', 2: 'PASS', 3: 'PASS', 4: 'NOT RUN', 5: 'PASS',
                              'distance': 'PASS'}
  falls, collapse, flattens, _, tradeoff, distance = result.verdicts
  first = falls.primary
  assert first.label == 'resnet/natural/medium'
  assert set(first.seeds.values()) == {len(CONFIRMATORY)}
  slope = first.intervals['net removal per doubling of N']
  assert slope.estimate == pytest.approx(np.polyfit(np.log2(NS), SHARES['medium'], 1)[0]
                                            + 0)  # the seed offsets are equal at every N
  assert slope.high < 0
  assert falls.exploratory.status == 'PASS'
  assert set(falls.exploratory.seeds.values()) == {len(EXPLORATORY)}
  assert set(secondary(falls)) == {'resnet/natural/small', 'resnet/natural/large',
                                   'unet/natural/medium'}  # the primary's own test is not
  assert falls.agree == 3 and len(falls.tested) == 3
  shift = collapse.primary.intervals['collapse shift in log2 N']
  # small crosses half-way at log2 N = 3 + 2 x 0.35 / 0.6, medium at 5 + 2 x 0.25 / 0.5
  assert shift.estimate == pytest.approx(6.0 - (3 + 0.7 / 0.6))
  assert 0 < shift.low <= shift.estimate <= shift.high
  assert list(secondary(collapse)) == ['resnet/natural: medium -> large']  # not its own
  ratio = flattens.primary.intervals['E_B change after 256 / drop before']
  at_256 = (flattening_e_b(128) + flattening_e_b(512)) / 2
  expected = (at_256 - flattening_e_b(4096)) / (flattening_e_b(8) - at_256)
  assert ratio.estimate == pytest.approx(expected)
  assert ratio.low <= expected <= ratio.high < 0.25
  net = tradeoff.primary.intervals['net removal']
  assert net.estimate == pytest.approx(SHARES['medium'][0] - SHARES['medium'][-1])
  assert tradeoff.primary.intervals['E_B'].low > 0
  assert len(tradeoff.secondary) == 3 * 4 + 4 - 1  # 4 objectives a group, not its own
  gap = distance.primary.intervals['gap beyond the range']
  assert gap.estimate == pytest.approx(0.006 * 35)  # mean of 0.06 x (10 ... 60) / 10
  assert result.complexity['natural']['patches'] == 256
  assert result.reference_range == 'medium'

  assert set(result.figures) == set(figures.FIGURES)
  for path in result.figures.values():
    assert_png(path)
  assert sorted(result.empty_figures) == ['10']
  text = result.path.read_text()
  for name, title in figures.FIGURES.values():
    assert f'![{title}' in text and f']({name})' in text
  assert ('| 1 | Removal falls as N grows: the slope of net removal against log2 N is '
          'negative | **PASS**: resnet/natural/medium: net removal per doubling of N') in text
  assert '(3 seeds) | PASS: net removal per doubling of N' in text
  assert '(2 seeds) | 3 of 3 |' in text
  assert '### Claim 2: PASS' in text and '(agrees after Holm)' in text
  assert ('| resnet | natural | medium | 8 | 5 | 34.40 | 0.808 | 0.000 | 15.03 | 25.00 | '
          '0.700 |') in text
  assert 'Units: E_R, E_B and PSNR on the 0-255 scale (fixture).' in text
  summary = json.loads((tmp_path / 'report' / 'verdicts.json').read_text())
  assert summary['verdicts'][0]['primary']['status'] == 'PASS'


def test_rising_and_unflattened_curves_fail(tmp_path):
  rising = {k: tuple(reversed(v)) for k, v in SHARES.items()}
  paper_like(tmp_path / 'rising', e_r=lambda n: 20.0 + 2.0 * math.log2(n),
             e_b=lambda n: 15.0 - 0.6 * math.log2(n), shares=rising, distance=(0.08, 0.02))
  result = report.write_report(tmp_path / 'rising', figures=False)
  assert {k: statuses(result)[k] for k in (1, 3, 5, 'distance')} == {
      1: 'FAIL', 3: 'FAIL', 5: 'FAIL', 'distance': 'FAIL'}
  falls, _, flattens, _, tradeoff, _ = result.verdicts
  assert secondary(falls)['resnet/natural/small'].status == 'FAIL'
  assert falls.agree == 0
  ratio = flattens.primary.intervals['E_B change after 256 / drop before']
  assert ratio.low > 0.25 or math.isinf(ratio.low)  # rising E_B: no drop to flatten
  assert secondary(tradeoff)['resnet/natural: N=8 small vs N=4096 medium'].status == 'FAIL'
  assert '**FAIL**' in result.path.read_text()

  swapped = {'small': SHARES['large'], 'medium': SHARES['medium'], 'large': SHARES['small']}
  paper_like(tmp_path / 'swapped', shares=swapped)  # collapse order reversed
  result = report.write_report(tmp_path / 'swapped', figures=False)
  assert statuses(result)[2] == 'FAIL' and statuses(result)[1] == 'PASS'


def test_a_collapse_needs_the_narrow_curve_to_fall(tmp_path):
  flat = {**SHARES, 'small': (0.1,) * 5}  # the small range never removes the unseen rain
  paper_like(tmp_path, shares=flat)
  collapse = report.write_report(tmp_path, figures=False).verdicts[1]
  assert collapse.primary.intervals['small curve falls'].high < 0.05
  assert collapse.status != 'PASS'


def test_not_converged_points_are_excluded_and_listed(tmp_path):
  def grid_with_outlier(out, train_psnr):
    paper_like(out)
    add_point(out, 'resnet', 'natural', 'medium', 8, CONFIRMATORY[-1] + 1, e_r=0.0,
              e_b=0.0, share=-0.9, train_psnr=train_psnr)  # damages more than it removes

  grid_with_outlier(tmp_path / 'gated', train_psnr=19.5)  # identity: 20 dB
  result = report.write_report(tmp_path / 'gated', figures=False)
  name = f'resnet_natural_medium_8_s{CONFIRMATORY[-1] + 1}'
  assert statuses(result)[5] == 'PASS'
  assert all(name not in points_used(v) for v in result.verdicts)
  assert result.not_converged == [{'point': name, 'psnr': 19.5, 'identity_psnr': 20.0,
                                      'net_removal': 0.5}]
  assert {r.converged for r in result.rows if r.point == name} == {False}
  text = result.path.read_text()
  assert f'- {name}: train PSNR 19.50 <= identity 20.00' in text

  grid_with_outlier(tmp_path / 'ungated', train_psnr=21.0)  # the same point, converged
  result = report.write_report(tmp_path / 'ungated', figures=False)
  assert name in points_used(result.verdicts[4])
  assert statuses(result)[5] == 'INCONCLUSIVE' and result.little_removal == []


def test_models_that_remove_little_of_their_training_rain_are_listed_and_kept(tmp_path):
  paper_like(tmp_path, seeds=EXPLORATORY)
  name = add_point(tmp_path, 'resnet', 'natural', 'medium', 128, seed=2, train_psnr=20.0003,
                   train_share=4e-5).name  # the identity (20 dB) up to rounding
  darkening = add_point(tmp_path, 'resnet', 'natural', 'medium', 128, seed=3,
                        train_psnr=27.0)  # removes rain, and darkens rain pixels more
  train_json = darkening / 'eval' / 'natural_train.json'
  train = json.loads(train_json.read_text())
  train['recent'].update(removal_share=0.85, net_removal=-0.25, over_subtraction=0.96)
  train_json.write_text(json.dumps(train))
  result = report.write_report(tmp_path, figures=False)
  assert result.little_removal == [
      {'point': name, 'psnr': 20.0003, 'identity_psnr': 20.0, 'net_removal': 4e-5,
       'why': 'near the identity'},
      {'point': darkening.name, 'psnr': 27.0, 'identity_psnr': 20.0, 'net_removal': -0.25,
       'why': 'over-subtracting'}]
  assert result.not_converged == [] and name in points_used(result.verdicts[0])
  text = result.path.read_text()
  assert '0 not converged, 2 removing little of their own training rain' in text
  assert (f'- {name}: near the identity: net removal 4e-05, train PSNR 20.0003 against the '
          'identity\'s 20.0000') in text
  assert f'- {darkening.name}: over-subtracting: net removal -0.25' in text


def test_a_primary_test_left_without_converged_points_is_not_converged(tmp_path):
  for n in NS:
    for seed in CONFIRMATORY:
      add_point(tmp_path, 'resnet', 'natural', 'medium', n, seed,
                train_psnr=15.0 if n == 32 else 25.0)
  result = report.write_report(tmp_path, figures=False)
  assert statuses(result)[1] == statistics.NOT_CONVERGED  # no N = 32 left
  assert statuses(result)[5] == 'PASS'  # N = 8 and 4096 are there
  assert statuses(result)[2] == statistics.NOT_RUN  # no small range either way


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
  verdict = result.verdicts[4]
  tests = secondary(verdict)
  assert len(tests) == 8 and verdict.status == statistics.NOT_RUN  # no primary points
  assert all(tests[f'resnet/natural: N={n} {r} vs N=30000 medium'].status == 'PASS'
             for n, r in objectives if n <= 512)
  assert verdict.agree == len(verdict.tested) == 4
  spdnet = tests['spdnet/natural: N=512 large vs N=30000 medium']  # one seed: no interval
  assert spdnet.intervals['net removal'].estimate == pytest.approx(0.05 - 0.1)
  assert spdnet.status == 'INCONCLUSIVE' and spdnet.agrees is None
  assert len(verdict.not_tested) == 4
  text = result.path.read_text()
  assert '| resnet | natural | large | 512 | 2 | 25.05 | 0.251 |' in text
  assert '| spdnet | natural | medium | 30000 | 1 | 10.00 | 0.100 |' in text
  assert '(no interval: a point with one usable seed)' in text and '(not tested)' in text


def test_flattening_interpolates_e_b_at_256_off_grid(tmp_path):
  # The claims grid's Ns: 256 lies halfway (in log2) between 128 and 512.
  for seed in CONFIRMATORY:
    for n, e_b in zip(NS, (20.0, 12.0, 8.0, 6.0, 5.5)):
      add_point(tmp_path, 'resnet', 'natural', 'medium', n, seed, e_r=falling_e_r(n),
                e_b=e_b + 0.02 * seed, share=0.5)
  verdict = report.write_report(tmp_path, figures=False).verdicts[2]
  ratio = verdict.primary.intervals['E_B change after 256 / drop before']
  assert ratio.estimate == pytest.approx(1.5 / 13.0)
  assert verdict.status == 'PASS'


def test_distance_gap_beyond_the_range(tmp_path):
  paper_like(tmp_path, seeds=CONFIRMATORY, distance=(0.05, 0.05))  # the same everywhere
  result = report.write_report(tmp_path)
  verdict = result.verdicts[5]
  assert verdict.claim == 'distance' and verdict.status == 'INCONCLUSIVE'
  gap = verdict.primary.intervals['gap beyond the range']
  assert gap.estimate == pytest.approx(0.0, abs=1e-12)
  assert 'distance' not in result.empty_figures
  assert_png(result.figures['distance'])


def test_missing_grids_are_not_run_and_still_drawn(tmp_path):
  (tmp_path / 'empty' / 'points').mkdir(parents=True)
  result = report.write_report(tmp_path / 'empty')
  assert set(statuses(result).values()) == {statistics.NOT_RUN}
  assert sorted(result.empty_figures) == sorted(figures.FIGURES)
  for path in result.figures.values():
    assert_png(path)
  text = result.path.read_text()
  assert text.count('(not run)') == len(figures.FIGURES) and '## Table 2' in text

  for n in (8, 30000):  # two values of N are no trend; no 3 ranges; one baseline pair
    add_point(tmp_path / 'two', 'resnet', 'natural', 'medium', n, share=0.5)
  result = report.write_report(tmp_path / 'two', figures=False)
  assert set(statuses(result).values()) == {statistics.NOT_RUN}
  assert [len(v.secondary) for v in result.verdicts] == [0, 0, 0, 0, 1, 0]


def test_trend_claims_say_how_they_moved_between_rungs(tmp_path):
  paper_like(tmp_path / 'cpu', seeds=CONFIRMATORY)
  longer = {**SHARES, 'medium': (0.8, 0.75, 0.5, 0.35, 0.3)}  # more removal at large N
  paper_like(tmp_path / 'long', seeds=CONFIRMATORY, shares=longer)
  result = report.write_report(tmp_path / 'long', figures=False,
                               previous_rung=tmp_path / 'cpu')
  text = result.path.read_text()
  assert '## From cpu to cpu' in text
  assert f'confirmatory seeds both rungs have ({", ".join(map(str, CONFIRMATORY))})' in text
  slope = lambda shares: np.polyfit(np.log2(NS), shares, 1)[0]
  change = slope(longer['medium']) - slope(SHARES['medium'])
  assert f'net removal per doubling of N: change {change:.3g} [' in text
  assert 'shrank' in text.split('net removal per doubling of N: change')[1].split('\n')[0]


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
  assert 'celeba > urban100' in [t['label'] for t in verdict['secondary']]
  assert json.loads((out / 'complexity.json').read_text()) == complexity  # kept for reuse
  assert 'manga109' in result['complexity_skipped']
  text = (out / 'report' / 'report.md').read_text()
  assert '- manga109: Unknown background category' in text
  assert f'claim 4: **{verdict["status"]}**' in capsys.readouterr().out
  assert_png(out / 'report' / 'figure6b_complexity.png')


def test_rain100l_cross_category_and_strips(tmp_path):
  rain100l = {'natural_rain100L': (30.0, 9.0, 0.4)}
  low = add_point(tmp_path, 'resnet', 'natural', 'medium', 8, sets=('unseen', 'rain100L'),
                  extra=rain100l)
  high = add_point(tmp_path, 'resnet', 'natural', 'medium', 4096,
                   sets=('unseen', 'rain100L'), extra={'natural_rain100L': (10.0, 4.0, 0.1)})
  add_point(tmp_path, 'resnet', 'celeba', 'medium', 8, sets=('unseen', 'rain100L'),
            extra={'natural_unseen': (1.0, 2.0, 0.0), **rain100l})
  for folder in (low, high):
    Image.new('RGB', (12, 4)).save(folder / 'eval' / 'natural_rain100L.png')
  result = report.write_report(tmp_path)
  assert result.test_rain == 'rain100L'
  assert '10' not in result.empty_figures  # celeba's model was tested on natural
  (tradeoff,) = result.verdicts[4].secondary  # 1 seed a point: no interval
  assert tradeoff.status == 'INCONCLUSIVE' and result.verdicts[4].not_tested
  text = result.path.read_text()
  assert 'Test set: `<category>_rain100L`' in text
  assert '| resnet | natural | medium | 8 | 1 | 30.00 | 0.400 | 0.000 | 9.00 |' in text
  for folder in (low, high):
    assert f'](qualitative/{folder.name}.png)' in text
    assert (tmp_path / 'report' / 'qualitative' / f'{folder.name}.png').is_file()
  assert 'celeba' in result.complexity_skipped

  forced = report.write_report(tmp_path, figures=False, test_rain='unseen')
  assert forced.test_rain == 'unseen'  # beside the automatic report, not over it
  assert forced.path == tmp_path / 'report_unseen' / 'report.md'
  assert 'Test set: `<category>_unseen`' in forced.path.read_text()
  assert 'Test set: `<category>_rain100L`' in result.path.read_text()
  (high / 'eval' / 'natural_rain100L.json').unlink()
  assert report.write_report(tmp_path, figures=False).test_rain == 'unseen'
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


def test_the_gate_reads_the_last_checkpoint_of_every_point(tmp_path):
  folder = add_point(tmp_path, 'resnet', 'natural', 'medium', 8)
  result = eval_result('natural_train', 60.0, 3.0, 0.9, psnr=20.001)  # recent mean: above
  for row in result['per_image']:
    row['psnr'] = 20.0  # the last checkpoint: the identity's
  (folder / 'eval' / 'natural_train.json').write_text(json.dumps(result))
  assert results.load_points(tmp_path)[0][0].converged is False


def test_a_claim_passes_beside_one_seed_groups_and_lists_non_finite_seeds(tmp_path):
  paper_like(tmp_path, seeds=EXPLORATORY + CONFIRMATORY)
  for n in (8, 4096):  # a slow model's one seed: its tests are not tested
    add_point(tmp_path, 'spdnet', 'natural', 'medium', n, 0, share=SHARES['medium'][
        NS.index(n)])
  broken = add_point(tmp_path, 'resnet', 'natural', 'medium', 8, CONFIRMATORY[-1] + 1,
                     share=math.nan).name  # a NaN net removal: not a usable seed
  result = report.write_report(tmp_path, figures=False)
  tradeoff = result.verdicts[4]
  assert tradeoff.status == 'PASS'
  assert 'spdnet/natural: N=8 medium vs N=4096 medium' in tradeoff.not_tested
  assert tradeoff.primary.dropped == [broken]
  assert tradeoff.primary.seeds['resnet/natural/medium N=8 net_removal on unseen'] == 3
  assert f'Left out for a non-finite value: {broken}.' in result.path.read_text()
