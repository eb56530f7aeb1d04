"""The study sweep: grids, commands, run, kill and resume."""

import json
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

from jaxderain import errors
from jaxderain.study import grids, sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_grids_have_the_papers_sizes_and_unique_names():
  sizes = {name: len(grids.grid_points(name, 'cpu')) for name in grids.GRIDS}
  assert sizes['fig4'] == 3 * 4 * 9 and sizes['fig5'] == 3 * 9
  assert sizes['table2'] == 3 * 5 and sizes['claims'] == 2 * 5 * 3
  for name in grids.GRIDS:
    points = grids.grid_points(name, 'paper')
    assert len({p.name for p in points}) == len(points)
  assert len(grids.grid_points('claims', 'cpu', seeds=[7])) == 10
  with pytest.raises(ValueError, match="Unknown grid 'fig99'"):
    grids.grid_points('fig99', 'cpu')


def test_study_grid_runs_each_part_once_claim2_first():
  points = grids.grid_points('study', 'cpu')
  names = [p.name for p in points]
  parts = {part: len(grids.grid_points(part, 'cpu')) for part in grids.STUDY}
  assert parts == {'claim2': 20, 'claims': 30, 'families': 16, 'categories': 6,
                   'table2_resnet': 2, 'table2_slow': 6}
  assert len(set(names)) == len(names) == sum(parts.values())
  assert names[:2] == ['resnet_small_8_scale-cpu_seed-0', 'resnet_small_8_scale-cpu_seed-1']
  configs = {p.name: sweep.point_config(p) for p in points}
  assert tuple(configs['resnet_medium_8_category-urban100_scale-cpu_seed-2']
               .eval.extra_categories) == ('natural',)  # Figure 10's fourth curve
  celeba = configs['resnet_medium_8_category-celeba_scale-cpu_seed-0']
  assert celeba.upscale_small_images and celeba.category == 'celeba'
  assert all(tuple(c.eval.rain_shifts) == ('angle', 'length', 'width')
             for c in configs.values())


def test_point_configs_and_commands_carry_the_study_overrides(tmp_path):
  point = grids.grid_points('fig10', 'cpu')[0]
  config = sweep.point_config(point)
  assert config.eval.average_last == 3 and config.keep_checkpoints >= 3
  assert config.checkpoint_every == config.total_steps // 10
  assert tuple(config.eval.extra_categories) == ('natural',)
  words = shlex.split(sweep.commands([point], tmp_path)[0])
  assert f'--workdir={tmp_path}/points/{point.name}' in words
  assert "--config.eval.extra_categories=('natural',)" in words and words[-1] == '--mode=eval'


def study(out, log):
  """The sweep CLI in a child; its chatty stderr goes to a file (a pipe would fill)."""
  return subprocess.Popen([sys.executable, '-m', 'jaxderain.study', 'run', '--grid=smoke',
                           '--scale=smoke', f'--out={out}'], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=log, text=True)


def test_sweep_killed_mid_run_resumes_where_it_stopped(tmp_path):
  out = tmp_path / 'study'
  log = (tmp_path / 'log.txt').open('w')
  first = study(out, log)
  deadline = time.time() + 300
  while not list(out.glob('points/*/done.json')) and time.time() < deadline:
    time.sleep(0.5)
  first.send_signal(signal.SIGKILL)
  first.wait()
  done_before = {p.parent.name for p in out.glob('points/*/done.json')}
  assert 1 <= len(done_before) < 4
  second = study(out, log)
  stdout, _ = second.communicate(timeout=600)
  assert second.returncode == 0, (tmp_path / 'log.txt').read_text()[-2000:]
  summary = json.loads(stdout.strip().splitlines()[-1])
  assert summary['skipped'] == len(done_before)
  assert summary['done'] == 4 - len(done_before) and not summary['failed']
  for point in grids.grid_points('smoke', 'smoke'):
    result = json.loads((out / 'points' / point.name / 'eval' / 'natural_unseen.json')
                        .read_text())
    assert len(result['recent']['steps']) == 3


@pytest.mark.reliability
def test_a_point_that_cannot_run_is_reported_and_a_damaged_result_is_redone(tmp_path, caplog):
  point = grids.grid_points('smoke', 'smoke')[0]
  points = [grids.Point('resnet,medium,8,category=/no/such/folder,scale=smoke'), point]
  summary = sweep.run(points, tmp_path)
  assert summary['done'] == 1 and list(summary['failed']) == [points[0].name]
  failures = json.loads((tmp_path / 'failures.json').read_text())
  assert 'Unknown background category' in failures[points[0].name]

  workdir = tmp_path / 'points' / point.name
  done = json.loads((workdir / 'done.json').read_text())
  assert done['results'] == ['natural_train.json', 'natural_unseen.json']
  original = (workdir / 'eval' / 'natural_unseen.json').read_text()
  assert sweep.run([point], tmp_path) == {'done': 0, 'skipped': 1, 'failed': {}}
  (workdir / 'eval' / 'natural_unseen.json').write_text(original[:100])  # cut short
  shutil.rmtree(workdir / 'checkpoints')  # a fresh clone: results, no checkpoints
  assert sweep.run([point], tmp_path)['done'] == 1
  assert 'eval/natural_unseen.json is missing or unreadable' in caplog.text
  assert (workdir / 'eval' / 'natural_unseen.json').read_text() == original  # retrained


@pytest.mark.parametrize('together', [1, 2])
@pytest.mark.parametrize('error', [errors.NotFoundError('No checkpoint: train it first.'),
                                   errors.NonFiniteError('the loss is nan'),
                                   TypeError('a bug'), ValueError('a bug')])
def test_user_errors_fail_their_point_and_other_errors_stop_the_sweep(tmp_path, monkeypatch,
                                                                       error, together):
  def fail(*args):
    raise error

  monkeypatch.setattr(sweep.experiment, 'train', fail)
  monkeypatch.setattr(sweep.experiment, 'train_together', fail)
  points = grids.grid_points('smoke', 'smoke')[:2]  # one group when together=2
  if isinstance(error, errors.UserError):  # recorded, and the sweep goes on
    summary = sweep.run(points, tmp_path, together=together)
    assert summary['done'] == 0 and summary['failed'] == {p.name: str(error) for p in points}
    assert json.loads((tmp_path / 'failures.json').read_text()) == summary['failed']
  else:  # a bug: its traceback, not a failed point
    with pytest.raises(type(error), match='a bug'):
      sweep.run(points, tmp_path, together=together)
    assert not (tmp_path / 'failures.json').exists()
