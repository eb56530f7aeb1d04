"""study plan (what a grid costs) and study status (where a sweep stands)."""

import json
import os
import pathlib
import socket

import pytest

from jaxderain import errors
from jaxderain.study import grids, plan, results, status
from jaxderain.study.folders import DoneRecord, StudyFolder


def results_folder(folder):
  """Benchmark files of made-up step times, in the layout the benchmarks write."""
  folder.mkdir()
  models = [{'arch': a, 'cpu_train_step_s': s, 'forward_480x320_s': f}
            for a, s, f in (('resnet', 0.04, 2.0), ('unet', 0.03, 1.0), ('swinir', 0.1, 40.0),
                            ('rcdnet', 0.2, 10.0), ('spdnet', 0.4, 4.0))]
  (folder / 'models.json').write_text(json.dumps(models))
  (folder / 'vs_torch_h100.json').write_text(json.dumps(
      [{'config': c, 'jax_s': s} for c, s in (('a', 0.02), ('cpu', 0.002), ('unet', 0.004),
                                               ('swinir', 0.003))]))
  (folder / 'vs_torch.json').write_text(json.dumps([{'config': 'a', 'jax_s': 10.0}]))
  return folder


def test_wall_time_places_the_longest_points_first_on_the_free_device():
  assert plan.wall_hours([1, 3, 2, 2], 2) == 4
  assert plan.wall_hours([1, 3, 2, 2], 1) == 8
  assert plan.wall_hours([5, 1, 1], 8) == 5


def test_measured_and_estimated_step_times_name_their_figures(tmp_path):
  results = results_folder(tmp_path / 'results')
  measured = plan.step_time('unet', 'cpu', plan.GPU, results)
  assert measured == plan.StepTime(0.004, 'vs_torch_h100.json [unet]', False)
  estimate = plan.step_time('rcdnet', 'paper', plan.GPU, results)
  assert estimate.estimate and estimate.seconds == pytest.approx(0.02 * 10.0 / 2.0)
  assert 'forward_480x320_s' in estimate.source
  on_cpu = plan.step_time('spdnet', 'cpu', plan.CPU, results)
  assert on_cpu == plan.StepTime(0.4, 'models.json [spdnet]', False)


def test_a_plan_counts_every_point_and_its_steps(tmp_path):
  results = results_folder(tmp_path / 'results')
  found = plan.plan('table2', 'paper', 8, results=results)
  points = grids.grid_points('table2', 'paper')
  assert found.points == len(points) and found.steps == 250_000 * len(points)
  hours = {r['arch']: r['hours'] for r in found.rows}
  assert hours['resnet'] == pytest.approx(5 * 250_000 * 0.02 / 3600)
  assert found.device_hours == pytest.approx(sum(hours.values()))
  assert found.wall_hours <= found.device_hours / 8 + max(
      250_000 * plan.step_time(r['arch'], 'paper', plan.GPU, results).seconds / 3600
      for r in found.rows)
  text = '\n'.join(plan.lines(found))
  assert 'ESTIMATE' in text and 'measured vs_torch_h100.json [a]' in text


def test_a_missing_benchmark_file_or_scale_is_one_clear_error(tmp_path):
  with pytest.raises(errors.DataError, match='models.json cannot be read'):
    plan.plan('fig5', 'paper', 8, results=tmp_path)
  with pytest.raises(errors.ConfigError, match="no step times are measured for scale 'smoke'"):
    plan.plan('fig5', 'smoke', 8)


# The least an eval JSON holds for its readers (folders.checked_eval_record).
EVAL_RECORD = json.dumps({'step': 40, 'E_R': 1.0, 'E_B': 2.0,
                          'reference': {'identity': {'psnr': 25.0}}})


def test_status_reads_each_points_state_from_the_folder(tmp_path):
  points = grids.grid_points('smoke', 'smoke')
  study = StudyFolder(tmp_path)
  folders = [study.point(p.name) for p in points]
  for folder in folders:
    folder.eval_dir.mkdir(parents=True)
  (folders[0].eval_dir / 'natural_unseen.json').write_text(EVAL_RECORD)
  folders[0].write_done(DoneRecord(arg=points[0].arg, seconds=12.5,
                                   results=('natural_unseen.json',)))
  (folders[1].path / 'run.lock').write_text(json.dumps(
      {'host': socket.gethostname(), 'pid': os.getpid(), 'purpose': 'training'}))
  folders[2].record_failure('no such category')
  (folders[3].eval_dir / 'natural_unseen.json').write_text(EVAL_RECORD)
  (folders[3].path / 'done.json').write_text('')  # cut short: not done, named
  rows = status.point_states(tmp_path, points)
  assert [r['state'] for r in rows] == ['done', 'running', 'failed', 'pending']
  assert rows[0]['seconds'] == 12.5 and f'PID {os.getpid()}' in rows[1]['note']
  assert rows[3]['note'].startswith(f'{points[3].name}/done.json is damaged')
  assert status.lines(rows)[-1] == '1 done, 1 running, 1 failed, 1 pending'
  (folders[1].path / 'run.lock').write_text(json.dumps(
      {'host': socket.gethostname(), 'pid': 2**22 + 7, 'purpose': 'training'}))  # gone
  states = {r['point']: r['state'] for r in status.point_states(tmp_path)}  # no grid
  assert states == {points[0].name: 'done', points[1].name: 'pending',
                    points[2].name: 'failed', points[3].name: 'pending'}


@pytest.mark.parametrize('text', ['', '[]', '{"results": 5}', '{"arg": "x", "seconds": "x"}',
                                  '{"seconds": 1.0}'])
def test_a_damaged_done_record_is_not_done_and_named(tmp_path, text):
  folder = StudyFolder(tmp_path).point('p')
  folder.eval_dir.mkdir(parents=True)
  (folder.eval_dir / 'natural_unseen.json').write_text(EVAL_RECORD)
  (folder.path / 'config.json').write_text('{"arch": "resnet"}')
  (folder.path / 'done.json').write_text(text)
  assert not folder.is_done()
  with pytest.raises(ValueError, match='p/done.json is damaged'):
    folder.done_record()
  _, not_run = results.load_points(tmp_path)  # the report names it, never a traceback
  assert not_run[0]['point'] == 'p' and 'done.json is damaged' in not_run[0]['reason']
  folder.write_done(DoneRecord(arg='x', seconds=1.0, results=('natural_unseen.json',)))
  assert folder.is_done() and folder.done_record().machine == {}


def test_the_packaged_step_times_are_the_benchmarks_files():
  measured = pathlib.Path(__file__).resolve().parents[1] / 'benchmarks' / 'results'
  for name in plan.STEP_TIME_FILES:
    assert (plan.STEP_TIMES / name).read_bytes() == (measured / name).read_bytes(), (
        f'{name}: run python -m benchmarks.step_times')
