"""Study report: rows, figures, verdicts and Markdown from hand-built sweep folders."""

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from jaxderain.study import report

NS = (8, 64, 256, 1024, 30000)
# Removal share per N for each rain range: collapse points 8, 64 and 256.
SHARES = {'small': (0.8, 0.2, 0.1, 0.1, 0.1),
          'medium': (0.8, 0.7, 0.2, 0.1, 0.1),
          'large': (0.8, 0.8, 0.7, 0.2, 0.1)}
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def falling_e_r(n):
  return 40.0 - 2.0 * math.log2(n)


def flattening_e_b(n):  # 15 at N = 8, 5.3 at 256, 5.0 at 30000
  return 5.0 + 10.0 * 2.0 ** (3 - math.log2(n))


def eval_result(testset, e_r, e_b, share, psnr=25.0, recent=True):
  """An eval JSON; with `recent`, the top level holds other (final-checkpoint) values."""
  metrics = {'E_R': e_r, 'E_B': e_b, 'psnr': psnr, 'ssim': 0.7, 'removal_share': share}
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
              share=None, train_psnr=25.0, sets=('unseen',), extra=None, recent=True,
              evaluated=True):
  """OUT/points/<name>/ with config.json and, if evaluated, eval JSONs: `sets` of its own
  category with the given metrics (defaults: the falling curves), its train set, and
  `extra` {testset: (E_R, E_B, share)}. Returns the point's folder."""
  short = report.short_category(category)
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
      json.dumps(eval_result(f'{short}_train', 1.0, 1.0, 0.0, psnr=train_psnr,
                             recent=recent)))
  return folder


def paper_like(out, e_r=falling_e_r, e_b=flattening_e_b, shares=None):
  """resnet on natural for all three ranges and two seeds, unet on medium: every N."""
  shares = shares or SHARES
  for rain_range in report.RAIN_RANGES:
    for seed in (0, 1):
      for i, n in enumerate(NS):
        add_point(out, 'resnet', 'natural', rain_range, n, seed, e_r=e_r(n) + 0.5 * seed,
                  e_b=e_b(n) + 0.5 * seed, share=shares[rain_range][i] + 0.01 * seed)
  for i, n in enumerate(NS):
    add_point(out, 'unet', 'natural', 'medium', n, e_r=e_r(n), e_b=e_b(n),
              share=SHARES['medium'][i])


def statuses(result):
  return {v['claim']: v['status'] for v in result['verdicts']}


def assert_png(path):
  assert path.read_bytes()[:8] == PNG_SIGNATURE
  with Image.open(path) as image:
    image.verify()


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
  assert tuple(csv_rows[0]) == report.FIELDS and tuple(json_rows[0]) == report.FIELDS
  assert len(csv_rows) == len(json_rows) == len(result['rows']) == 4  # 2 points x 2 sets
  by_key = {(r['point'], r['testset']): r for r in json_rows}
  recent = by_key[('resnet_natural_medium_8_s0', 'natural_unseen')]
  assert recent == {
      'point': 'resnet_natural_medium_8_s0', 'arch': 'resnet', 'category': 'natural',
      'rain_range': 'medium', 'num_patches': 8, 'seed': 0, 'scale': 'cpu',
      'testset': 'natural_unseen', 'step': 8000, 'E_R': 12.0, 'E_B': 3.0, 'psnr': 25.0,
      'ssim': 0.7, 'removal_share': 0.5, 'identity_psnr': 20.0, 'identity_E_B': 1.5,
      'perfect_E_R': 60.0, 'converged': True}
  old = by_key[('unet_natural_medium_64_s0', 'natural_unseen')]  # no `recent`: top level
  assert (old['E_R'], old['converged']) == (7.0, False)
  assert csv_rows[0]['converged'] in ('True', 'False')
  assert result['num_points'] == 5
  assert result['not_run'][:2] == [
      {'point': 'broken', 'reason': 'no config.json'},
      {'point': 'resnet_natural_small_8_s0', 'reason': 'no eval results'}]
  assert result['not_run'][2]['reason'].startswith('unreadable eval/natural_unseen.json')
  assert [p['point'] for p in result['not_converged']] == ['unet_natural_medium_64_s0']
  assert result['figures'] == {} and result['test_rain'] == 'unseen'
  summary = json.loads((tmp_path / 'report' / 'verdicts.json').read_text())
  assert [v['status'] for v in summary['verdicts']] == [report.NOT_RUN] * 5
  text = result['report'].read_text()
  assert 'Figures were not drawn' in text and 'broken: no config.json' in text


def test_paper_like_grid_passes_with_its_statistics(tmp_path):
  paper_like(tmp_path)
  result = report.write_report(tmp_path)
  assert statuses(result) == {1: 'PASS', 2: 'PASS', 3: 'PASS', 4: 'NOT RUN', 5: 'PASS'}
  falls, collapse, flattens, _, tradeoff = (v['values'] for v in result['verdicts'])
  assert set(falls) == {'resnet/natural/small', 'resnet/natural/medium',
                        'resnet/natural/large', 'unet/natural/medium'}
  assert all(v['rho_E_R'] == pytest.approx(-1.0) for v in falls.values())
  assert falls['resnet/natural/large']['rho_removal_share'] < 0
  assert collapse == {'natural': {'small': 8, 'medium': 64, 'large': 256}}
  medium = flattens['resnet/natural/medium']
  assert medium['E_B_at_256'] == pytest.approx(flattening_e_b(256) + 0.25)  # seed mean
  assert medium['rho_E_B'] == pytest.approx(-1.0)
  expected = ((flattening_e_b(256) - flattening_e_b(30000)) /
              (flattening_e_b(8) - flattening_e_b(256)))
  assert medium['late_over_early'] == pytest.approx(expected)
  baseline = ['natural N=30000 medium']  # the medium one of the three at N = 30000
  assert tradeoff == {
      'resnet': {'objectives': 9, 'beat_E_R': 9, 'lose_E_B': 9, 'baselines': baseline},
      'unet': {'objectives': 3, 'beat_E_R': 3, 'lose_E_B': 3, 'baselines': baseline}}
  assert 'rho(E_R) -1.00' in result['verdicts'][0]['statistic']
  assert result['complexity']['natural']['patches'] == 256
  assert result['reference_range'] == 'medium'

  assert set(result['figures']) == set(report.FIGURES)
  for path in result['figures'].values():
    assert_png(path)
  assert result['empty_figures'] == ['10']  # no model trained elsewhere, tested on natural
  text = result['report'].read_text()
  for name, title in report.FIGURES.values():
    assert f'![{title}' in text and f']({name})' in text
  assert 'Figure 10: models trained on each category, tested on natural' in text
  assert '(rain range medium) (not run)' not in text and 'natural (not run)' in text
  assert '| 1 | E_R and removal share fall' in text and '**PASS**' in text
  assert '| resnet | natural | medium | 8 | 2 | 34.25 | 15.25 | 25.00 | 0.700 |' in text
  assert 'Units: E_R, E_B and PSNR on the 0-255 scale (fixture).' in text


def test_rising_and_unflattened_curves_fail(tmp_path):
  swapped = {'small': SHARES['large'], 'medium': SHARES['medium'], 'large': SHARES['small']}
  paper_like(tmp_path, e_r=lambda n: 20.0 + 2.0 * math.log2(n),
             e_b=lambda n: 15.0 - 0.6 * math.log2(n), shares=swapped)
  result = report.write_report(tmp_path, figures=False)
  assert statuses(result) == {1: 'FAIL', 2: 'FAIL', 3: 'FAIL', 4: 'NOT RUN', 5: 'FAIL'}
  falls, collapse, flattens, _, tradeoff = (v['values'] for v in result['verdicts'])
  assert falls['unet/natural/medium']['rho_E_R'] == pytest.approx(1.0)
  assert collapse['natural'] == {'small': 256, 'medium': 64, 'large': 8}
  assert flattens['resnet/natural/small']['late_over_early'] > 1.0
  assert tradeoff['resnet']['beat_E_R'] == 0 and tradeoff['resnet']['lose_E_B'] == 9
  assert '**FAIL**' in result['report'].read_text()


def test_not_converged_points_are_excluded_and_listed(tmp_path):
  def grid_with_outlier(out, train_psnr):
    paper_like(out)
    add_point(out, 'resnet', 'natural', 'medium', 512, e_r=0.0, e_b=99.0, share=0.99,
              train_psnr=train_psnr)  # removes no rain: below the baseline's E_R

  grid_with_outlier(tmp_path / 'gated', train_psnr=19.5)  # identity: 20 dB
  result = report.write_report(tmp_path / 'gated', figures=False)
  name = 'resnet_natural_medium_512_s0'
  assert statuses(result)[5] == 'PASS'
  assert result['verdicts'][4]['values']['resnet']['objectives'] == 9
  assert result['verdicts'][4]['not_converged'] == [name]
  assert result['verdicts'][1]['not_converged'] == [name]  # every claim on resnet lists it
  assert result['not_converged'] == [{'point': name, 'psnr': 19.5, 'identity_psnr': 20.0}]
  assert {r['converged'] for r in result['rows'] if r['point'] == name} == {False}
  text = result['report'].read_text()
  assert f'- {name}: train PSNR 19.50 <= identity 20.00' in text
  assert f'excluded, not converged: {name}' in text
  assert '| resnet | natural | medium | 512 |' not in text  # nor in Table 2

  grid_with_outlier(tmp_path / 'ungated', train_psnr=21.0)  # the same point, converged
  assert statuses(report.write_report(tmp_path / 'ungated', figures=False))[5] == 'FAIL'


def test_table2_objectives_are_compared_with_the_largest_n_baseline(tmp_path):
  # Table 2's grid: the baseline (30000, medium) against fewer backgrounds and wider rain.
  objectives = {(30000, 'medium'): (10.0, 3.0), (64, 'medium'): (20.0, 5.0),
                (512, 'large'): (25.0, 4.0), (256, 'large'): (30.0, 4.5),
                (128, 'large'): (35.0, 6.0)}
  for arch in ('resnet', 'spdnet'):
    for (n, rain_range), (e_r, e_b) in objectives.items():
      if arch == 'spdnet' and n == 512:
        e_r = 9.0  # removes less rain than its baseline
      add_point(tmp_path, arch, 'natural', rain_range, n, e_r=e_r, e_b=e_b, share=0.5)
  result = report.write_report(tmp_path, figures=False)
  verdict = result['verdicts'][4]
  assert verdict['status'] == 'FAIL'
  assert verdict['values']['resnet'] == {'objectives': 4, 'beat_E_R': 4, 'lose_E_B': 4,
                                         'baselines': ['natural N=30000 medium']}
  assert verdict['values']['spdnet']['beat_E_R'] == 3
  assert 'spdnet: 3/4 beat on E_R, 4/4 lose on E_B' in verdict['statistic']
  text = result['report'].read_text()
  assert '| resnet | natural | large | 512 | 1 | 25.00 | 4.00 | 25.00 | 0.700 |' in text
  assert '| spdnet | natural | medium | 30000 | 1 | 10.00 | 3.00 | 25.00 | 0.700 |' in text


def test_flattening_interpolates_e_b_at_256_off_grid(tmp_path):
  # The claims grid's Ns: 256 lies halfway (in log2) between 128 and 512.
  for n, e_b in zip((8, 32, 128, 512, 4096), (20.0, 12.0, 8.0, 6.0, 5.5)):
    add_point(tmp_path, 'resnet', 'natural', 'medium', n, e_r=falling_e_r(n), e_b=e_b,
              share=0.5)
  verdict = report.write_report(tmp_path, figures=False)['verdicts'][2]
  values = verdict['values']['resnet/natural/medium']
  assert values['E_B_at_256'] == pytest.approx(7.0)
  assert values['late_over_early'] == pytest.approx(1.5 / 13.0)
  assert verdict['status'] == 'PASS'


def test_missing_grids_are_not_run_and_still_drawn(tmp_path):
  (tmp_path / 'empty' / 'points').mkdir(parents=True)
  result = report.write_report(tmp_path / 'empty')
  assert set(statuses(result).values()) == {report.NOT_RUN}
  assert sorted(result['empty_figures']) == sorted(report.FIGURES)
  for path in result['figures'].values():
    assert_png(path)
  text = result['report'].read_text()
  assert text.count('(not run)') == len(report.FIGURES) and '## Table 2' in text

  for n in (8, 30000):  # two values of N are no trend; no 3 ranges; no baseline pair
    add_point(tmp_path / 'two', 'resnet', 'natural', 'medium', n)
  result = report.write_report(tmp_path / 'two', figures=False)
  assert statuses(result) == {1: 'NOT RUN', 2: 'NOT RUN', 3: 'NOT RUN', 4: 'NOT RUN',
                              5: 'PASS'}
  assert result['verdicts'][0]['statistic'].startswith('needs 3 values of N')


def test_missing_study_folder_is_one_clear_line(tmp_path, capsys):
  with pytest.raises(FileNotFoundError, match='points does not exist'):
    report.write_report(tmp_path)
  assert report.cli(str(tmp_path)) == 1
  assert 'does not exist' in capsys.readouterr().err


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
  assert report.cli(str(out)) == 0
  result = json.loads((out / 'report' / 'verdicts.json').read_text())
  complexity = result['complexity']
  assert set(complexity) == {'celeba', 'urban100'}
  flat = 'urban100' if celeba_textured else 'celeba'
  assert complexity[flat] == {'mean': 0.0, 'std': 0.0, 'patches': 256}
  verdict = result['verdicts'][3]
  assert verdict['status'] == ('PASS' if celeba_textured else 'FAIL')
  assert list(verdict['values']) == ['celeba', 'urban100']
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
  assert statuses(result)[5] == 'PASS'  # 30 > 10 on E_R, 9 > 4 on E_B
  text = result['report'].read_text()
  assert 'Test set: `<category>_rain100L`' in text
  assert '| resnet | natural | medium | 8 | 1 | 30.00 | 9.00 |' in text
  for folder in (low, high):
    assert f'](qualitative/{folder.name}.png)' in text
    assert (tmp_path / 'report' / 'qualitative' / f'{folder.name}.png').is_file()
  assert 'celeba' in result['complexity_skipped']

  assert report.write_report(tmp_path, figures=False, test_rain='unseen')['test_rain'] == (
      'unseen')
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
  point = report.load_points(tmp_path)[0][0]
  assert report.gate_psnrs(point.evals['natural_train']) == (30.0, 20.0)
  assert point.converged
  result['per_image'][0]['psnr'] = 19.0  # worse than the identity where there is rain
  (folder / 'eval' / 'natural_train.json').write_text(json.dumps(result))
  assert report.load_points(tmp_path)[0][0].converged is False
