"""The study sweep: grids, commands, run, kill and resume."""

import json
import os
import pathlib
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from jaxderain import errors
from jaxderain.configs import grid
from jaxderain.study import grids, on_ray, primary, status, sweep
from jaxderain.study.folders import PointFolder, StudyFolder
from jaxderain.train import checkpoints
from jaxderain.workdir import hold, latest_step, lock_holder

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_grids_have_the_papers_sizes_and_unique_names():
  sizes = {name: len(grids.grid_points(name, 'cpu')) for name in grids.GRIDS}
  assert sizes['fig4'] == 3 * 4 * 9 and sizes['fig5'] == 3 * 9
  assert sizes['table2'] == 3 * 5 and sizes['claims'] == 2 * 5 * 3
  for name in grids.GRIDS:
    points = grids.grid_points(name, 'paper')
    assert len({p.name for p in points}) == len(points)
  assert len(grids.grid_points('claims', 'cpu', seeds=[7])) == 10
  confirm = grids.grid_points('confirm', 'cpu')  # the primary tests' fresh seeds
  assert len(confirm) == 2 * 5 * len(primary.CONFIRMATORY_SEEDS)
  assert {int(p.arg.rsplit('=', 1)[1]) for p in confirm} == set(primary.CONFIRMATORY_SEEDS)
  assert not set(primary.CONFIRMATORY_SEEDS) & {0, 1, 2}
  assert len(grids.grid_points('confirm_trend', 'cpu-long')) == 5 * primary.TREND_SEEDS
  with pytest.raises(ValueError, match="Unknown grid 'fig99'"):
    grids.grid_points('fig99', 'cpu')


def test_study_grid_runs_each_part_once_claim2_first():
  points = grids.grid_points('study', 'cpu')
  names = [p.name for p in points]
  parts = {part: len(grids.grid_points(part, 'cpu')) for part in grids.STUDY}
  assert parts == {'claim2': 20, 'claims': 30, 'families': 16, 'categories': 6,
                   'table2_resnet': 2, 'table2_slow': 6}
  assert len(set(names)) == len(names) == sum(parts.values())
  assert names[:2] == ['resnet_small_8_scale-cpu_seed-0', 'resnet_small_32_scale-cpu_seed-0']
  assert names.index('resnet_small_8_scale-cpu_seed-1') == 10  # seed by seed: whole curves
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
  assert f'--config.checkpoint_every={config.total_steps // 10}' in words
  # The cadence leaves training alone: a point trained by launch.py resumes under the study.
  assert not any(grid.SCHEMA.field(field).trains for field in sweep.CADENCE)


def study(out, log):
  """The sweep CLI in a child; its chatty stderr goes to a file (a pipe would fill)."""
  return subprocess.Popen([sys.executable, '-m', 'jaxderain.study', 'run', '--grid=smoke',
                           '--scale=smoke', f'--out={out}'], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=log, text=True)


@pytest.fixture(scope='module')
def local_study(tmp_path_factory):
  """The smoke grid run by the local engine's command line, killed (SIGKILL) once a point
  is done and run again: (its folder, the points done before the kill, the second run's
  summary, its log)."""
  tmp_path = tmp_path_factory.mktemp('local_study')
  out, log_path = tmp_path / 'study', tmp_path / 'log.txt'
  log = log_path.open('w')
  first = study(out, log)
  deadline = time.time() + 300
  while not list(out.glob('points/*/done.json')) and time.time() < deadline:
    time.sleep(0.5)
  first.send_signal(signal.SIGKILL)
  first.wait()
  done_before = {p.parent.name for p in out.glob('points/*/done.json')}
  second = study(out, log)
  stdout, _ = second.communicate(timeout=600)
  assert second.returncode == 0, log_path.read_text()[-2000:]
  return out, done_before, json.loads(stdout.strip().splitlines()[-1]), log_path


def test_sweep_killed_mid_run_resumes_where_it_stopped(local_study):
  out, done_before, summary, _ = local_study
  assert 1 <= len(done_before) < 4
  assert summary['skipped'] == len(done_before)
  assert summary['done'] == 4 - len(done_before) and not summary['failed']
  for name in done_before:  # trained from scratch in the first run
    assert json.loads((out / 'points' / name / 'done.json').read_text())[
        'resumed_from_step'] == 0
  for point in grids.grid_points('smoke', 'smoke'):
    result = json.loads((out / 'points' / point.name / 'eval' / 'natural_unseen.json')
                        .read_text())
    assert len(result['recent']['steps']) == 3
    packed, _ = StudyFolder(out).point(point.name).read_results()  # what a study commits
    assert packed['natural_unseen'] == result
  assert not (out / 'run.lock').exists()  # the sweep's lock on OUT went with it


def test_a_second_sweep_on_one_folder_is_refused(tmp_path):
  with hold(tmp_path, 'sweep', flag='--out'):
    log = (tmp_path / 'log.txt').open('w')
    second = study(tmp_path, log)
    second.communicate(timeout=300)
  lines = (tmp_path / 'log.txt').read_text().strip().splitlines()
  assert second.returncode == 1
  assert lines[-1].startswith(f'error: {tmp_path} is in use: sweep by PID {os.getpid()}')
  assert 'pass another --out' in lines[-1] and not (tmp_path / 'points').exists()


def test_a_task_removes_only_a_lock_left_on_another_host(tmp_path):
  def lock(host, pid):
    (tmp_path / 'run.lock').write_text(json.dumps({'host': host, 'pid': pid,
                                                   'purpose': 'training'}))
  lock('a-lost-node', 123)  # an attempt on a node that is gone
  on_ray._clear_lock_of_earlier_attempt(tmp_path)  # pylint: disable=protected-access
  assert not (tmp_path / 'run.lock').exists()
  lock(socket.gethostname(), os.getpid())  # a live process here: left to the point's check
  on_ray._clear_lock_of_earlier_attempt(tmp_path, wait_s=0.2)  # pylint: disable=protected-access
  assert lock_holder(tmp_path)['pid'] == os.getpid()


@pytest.fixture(scope='module')
def ray_cluster():
  """A real Ray cluster on this machine: a head with no CPUs for tasks and two worker
  nodes of one CPU each, so tasks run on the workers side by side."""
  import ray  # pylint: disable=import-outside-toplevel
  from ray import cluster_utils  # pylint: disable=import-outside-toplevel
  memory = {'object_store_memory': 100 * 2**20}  # the tasks pass no data through Ray
  cluster = cluster_utils.Cluster(initialize_head=True,
                                  head_node_args={'num_cpus': 0, **memory})
  nodes = [cluster.add_node(num_cpus=1, **memory) for _ in range(2)]
  cluster.wait_for_nodes()
  yield cluster, nodes
  ray.shutdown()
  cluster.shutdown()


@pytest.mark.ray
def test_ray_runs_the_grid_as_the_local_engine_does(tmp_path, local_study, ray_cluster):
  cluster, _ = ray_cluster
  local = local_study[0]
  smoke = grids.grid_points('smoke', 'smoke')[::2]  # resnet and unet, N = 8
  bad = grids.Point('resnet,medium,8,category=/no/such/folder,scale=smoke')
  summary = on_ray.run(smoke + [bad], tmp_path, address=cluster.address)
  assert summary['done'] == 2 and list(summary['failed']) == [bad.name]
  assert 'Unknown background category' in summary['failed'][bad.name]
  log = StudyFolder(tmp_path).point(bad.name).log_file.read_text()
  assert log.count('--- ') == 1  # a user error: run once, not retried
  states = {row['point']: row['state'] for row in status.point_states(tmp_path)}
  assert states == {**{p.name: 'done' for p in smoke}, bad.name: 'failed'}
  for point in smoke:  # the same science whichever engine ran it
    results = sorted((local / 'points' / point.name / 'eval').glob('*.json'))
    assert len(results) == 2
    for result in results:
      assert (tmp_path / 'points' / point.name / 'eval' / result.name).read_text() == \
          result.read_text(), (point.name, result.name)


@pytest.mark.ray
def test_ray_refuses_a_cluster_it_cannot_reach_or_use(tmp_path, ray_cluster):
  cluster, _ = ray_cluster
  smoke = grids.grid_points('smoke', 'smoke')
  with pytest.raises(errors.ConfigError, match='cannot reach the Ray cluster at --address=1'):
    on_ray.run(smoke, tmp_path, address='127.0.0.1:1')
  with pytest.raises(errors.ConfigError, match=r'asks for 1 GPU\(s\).* cluster has 0 GPU'):
    on_ray.run(smoke, tmp_path, address=cluster.address, gpus_per_point=1)
  assert not (tmp_path / 'points').exists()


@pytest.mark.ray
def test_a_point_whose_node_dies_finishes_on_another_as_if_never_stopped(
    tmp_path, local_study, ray_cluster):
  cluster, nodes = ray_cluster
  point = grids.grid_points('smoke', 'smoke')[0]
  workdir = tmp_path / 'points' / point.name
  summary = {}
  driver = threading.Thread(target=lambda: summary.update(
      on_ray.run([point], tmp_path, address=cluster.address)))
  driver.start()
  deadline = time.time() + 300
  while latest_step(workdir) is None and time.time() < deadline:
    time.sleep(0.05)
  os.kill(lock_holder(workdir)['pid'], signal.SIGSTOP)  # hold the child mid-training
  stopped_at = latest_step(workdir)
  total = sweep.point_config(point).total_steps
  assert stopped_at < total
  cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
  cluster.wait_for_nodes()
  for node in nodes:  # the node running the point dies, with its worker and child
    cluster.remove_node(node, allow_graceful=False)
  driver.join(timeout=600)
  assert summary == {'done': 1, 'skipped': 0, 'failed': {}}
  log = PointFolder(workdir).log_file.read_text()
  assert log.count('--- ') == 2 and 'Resuming from checkpoint at step' in log
  done = json.loads((workdir / 'done.json').read_text())
  assert stopped_at <= done['resumed_from_step'] < total  # timed from the resumed step
  reference = local_study[0] / 'points' / point.name / 'checkpoints'
  assert checkpoints.saved_fingerprint(workdir / 'checkpoints', total) == \
      checkpoints.saved_fingerprint(reference, total) is not None


@pytest.mark.reliability
def test_a_point_that_cannot_run_is_reported_and_a_damaged_result_is_redone(tmp_path, caplog):
  point = grids.grid_points('smoke', 'smoke')[0]
  points = [grids.Point('resnet,medium,8,category=/no/such/folder,scale=smoke'), point]
  summary = sweep.run(points, tmp_path)
  assert summary['done'] == 1 and list(summary['failed']) == [points[0].name]
  assert 'Unknown background category' in StudyFolder(tmp_path).point(points[0].name).failure()

  workdir = tmp_path / 'points' / point.name
  done = json.loads((workdir / 'done.json').read_text())
  assert done['results'] == ['natural_train.json', 'natural_unseen.json']
  original = (workdir / 'results.json').read_text()
  assert sweep.run([point], tmp_path) == {'done': 0, 'skipped': 1, 'failed': {}}
  (workdir / 'results.json').write_text(original[:100])  # cut short
  shutil.rmtree(workdir / 'checkpoints')  # a fresh clone: results, no checkpoints
  shutil.rmtree(workdir / 'eval')
  assert sweep.run([point], tmp_path)['done'] == 1
  assert 'results.json (' in caplog.text and 'evaluating it again' in caplog.text
  assert (workdir / 'results.json').read_text() == original  # retrained, the same


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
    assert {p.name: StudyFolder(tmp_path).point(p.name).failure() for p in points} == \
        summary['failed']
  else:  # a bug: its traceback, not a failed point
    with pytest.raises(type(error), match='a bug'):
      sweep.run(points, tmp_path, together=together)
    assert not any(StudyFolder(tmp_path).point(p.name).failure() for p in points)
