"""Inputs a hostile user tries: weights that are not finite, checkpoints deleted while they
are read, odd state_dicts, advice that must work as given, damaged EXIF blocks and the
operating system's refusals. Each ends in success or one line `error: ...` with nothing
lost. Marker: reliability."""

import errno
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import ml_dtypes
import numpy as np
import pytest
from ml_collections.config_flags.tuple_parser import TupleParser
from PIL import Image

from conftest import ROOT, SMOKE_POINT, error_lines, run_commands
from jaxderain import cli, convert, experiment
from jaxderain import workdir as workdir_lock
from jaxderain.configs import checks, grid
from jaxderain.errors import CheckpointError, ConfigError, NonFiniteError, WorkdirError
from jaxderain.eval import evaluate
from jaxderain.train import checkpoints

pytestmark = pytest.mark.reliability


@pytest.fixture
def trained(smoke_workdir, tmp_path):
  """A private copy of the shared smoke run (these tests write into it)."""
  return pathlib.Path(shutil.copytree(smoke_workdir, tmp_path / 'run'))


def save_nan_weights(workdir: pathlib.Path) -> int:
  """Save a checkpoint after the latest whose parameters are all NaN; returns its step."""
  config = ml_collections.ConfigDict(json.loads((workdir / 'config.json').read_text()))
  _, _, template, _ = experiment.state_template(config)
  manager = checkpoints.checkpoint_manager(workdir)
  state = checkpoints.restore(manager, template)
  broken = state.replace(params=jax.tree.map(lambda p: jnp.full_like(p, jnp.nan),
                                             state.params), step=state.step + 1)
  checkpoints.save(manager, int(broken.step), broken)
  checkpoints.wait(manager)
  return int(broken.step)


def test_nan_weights_are_one_line_and_nothing_is_written(trained, tmp_path):
  save_nan_weights(trained)
  Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(tmp_path / 'in.png')
  evals_before = sorted((trained / 'eval').glob('*'))
  derained, = run_commands('jaxderain.derain', [
      f'--workdir={trained}', f'--input={tmp_path / "in.png"}', f'--output={tmp_path / "out"}',
      '--tile=32', '--overlap=8'])
  evaluated, = run_commands('launch', [f'--config={SMOKE_POINT}', f'--workdir={trained}',
                                       '--mode=eval', '--config.eval.average_last=1'])
  for result in (derained, evaluated):
    lines = error_lines(result)
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-3000:]
    assert 'NaN or infinite output values' in lines[0] and 'Traceback' not in result.stderr
  assert not any((tmp_path / 'out').glob('*.png'))  # no black PNG
  assert sorted((trained / 'eval').glob('*')) == evals_before


def test_finite_outputs_counts_what_is_not_finite():
  assert evaluate.finite_outputs(np.zeros((2, 3))).shape == (2, 3)
  with pytest.raises(NonFiniteError, match='gave 2 NaN or infinite'):
    evaluate.finite_outputs(np.array([0.5, np.nan, np.inf, 1.0]))


def test_a_checkpoint_deleted_while_read_is_followed_by_the_new_latest(trained, monkeypatch):
  config = ml_collections.ConfigDict(json.loads((trained / 'config.json').read_text()))
  _, _, template, _ = experiment.state_template(config)
  steps = sorted(checkpoints.checkpoint_manager(trained).all_steps())
  assert len(steps) >= 2
  real_restore, calls = checkpoints.restore, []

  def deleted_under_the_reader(manager, state_template, step=None):
    calls.append(step)
    if len(calls) == 1:  # the training's keep policy deletes the step being read
      shutil.rmtree(trained / 'checkpoints' / str(step))
    return real_restore(manager, state_template, step)

  monkeypatch.setattr(checkpoints, 'restore', deleted_under_the_reader)
  state = checkpoints.restore_newest(trained, template)
  assert calls == [steps[-1], steps[-2]] and int(state.step) == steps[-2]


def test_a_damaged_checkpoint_is_not_retried(trained):
  config = ml_collections.ConfigDict(json.loads((trained / 'config.json').read_text()))
  _, _, template, _ = experiment.state_template(config)
  latest = max(checkpoints.checkpoint_manager(trained).all_steps())
  shutil.rmtree(trained / 'checkpoints' / str(latest) / 'state')
  with pytest.raises(CheckpointError, match=f'{latest} is incomplete'):
    checkpoints.restore_newest(trained, template)


def test_state_dicts_widen_bfloat16_unwrap_the_nested_one_with_tensors_and_refuse_nan():
  weights = np.arange(6, dtype=np.float32).reshape(2, 3)
  loaded = {'params_ema': {}, 'params': {'module.conv.weight': weights.astype(
      ml_dtypes.bfloat16), 'step': np.array(3)}}
  arrays = convert.state_dict_arrays(loaded, 'w.pt')
  assert sorted(arrays) == ['conv.weight', 'step'] and arrays['conv.weight'].dtype == np.float32
  np.testing.assert_array_equal(arrays['conv.weight'], weights)
  with pytest.raises(CheckpointError, match=r'w.pt has tensors holding NaN or infinite values \(conv.weight\)'):
    convert.state_dict_arrays({'conv.weight': np.array([1.0, np.nan])}, 'w.pt')
  with pytest.raises(CheckpointError, match='a dict without tensors, not a state_dict') as no:
    convert.state_dict_arrays({'params_ema': {}}, 'w.pt')
  assert 'params_ema' not in str(no.value)  # no advice to save the empty entry


def test_convert_onto_a_file_or_under_one_is_one_line_before_reading_weights(tmp_path):
  afile = tmp_path / 'afile'
  afile.write_text('mine')
  results = run_commands('jaxderain.convert', *[
      ['--config=configs/grid.py:rcdnet,medium,8,scale=smoke',
       f'--torch={tmp_path / "missing.pt"}', f'--workdir={workdir}']
      for workdir in (afile, afile / 'sub')])
  for result in results:
    lines = error_lines(result)
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-3000:]
    assert 'is not writable' in lines[0] and '--workdir' in lines[0]
  assert afile.read_text() == 'mine'


def test_small_held_out_images_advise_the_eval_size_and_that_advice_is_accepted(trained):
  args = [f'--config={SMOKE_POINT}', f'--workdir={trained}', '--mode=eval',
          '--config.eval.average_last=1']
  too_big, advised = run_commands('launch', [*args, '--config.eval.image_size=5000'],
                                  [*args, '--config.eval.image_size=48'])
  lines = error_lines(too_big)
  assert too_big.returncode == 1 and len(lines) == 1, too_big.stderr[-3000:]
  assert '--config.eval.image_size' in lines[0] and 'patch_size' not in lines[0]
  assert advised.returncode == 0, advised.stderr[-3000:]


def test_evaluating_on_a_device_count_the_batch_does_not_divide_needs_no_change(trained):
  flags = os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=3'
  result = subprocess.run(
      [sys.executable, 'launch.py', f'--config={SMOKE_POINT}', f'--workdir={trained}',
       '--mode=eval', '--config.eval.average_last=1'], cwd=ROOT, capture_output=True,
      text=True, timeout=600, check=False, env={**os.environ, 'XLA_FLAGS': flags})
  assert result.returncode == 0, result.stderr[-3000:]  # batch 8 on 3 devices: eval only
  training = subprocess.run(
      [sys.executable, 'launch.py', f'--config={SMOKE_POINT}', f'--workdir={trained}',
       '--config.total_steps=50'], cwd=ROOT, capture_output=True, text=True, timeout=600,
      check=False, env={**os.environ, 'XLA_FLAGS': flags})
  lines = error_lines(training)
  assert training.returncode == 1 and len(lines) == 1 and 'not divisible by the 3' in lines[0]


def test_a_damaged_exif_block_is_one_warning_line_and_the_photo_is_derained(
    smoke_workdir, tmp_path):
  Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(
      tmp_path / 'odd.jpg',
      exif=b'Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03\xff\xff\xff\xff')
  result, = run_commands('jaxderain.derain', [
      f'--workdir={smoke_workdir}', f'--input={tmp_path / "odd.jpg"}',
      f'--output={tmp_path / "out"}', '--tile=32', '--overlap=8'])
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'UserWarning' not in result.stderr and 'warnings.warn' not in result.stderr
  mentions = [line for line in result.stderr.splitlines() if 'Corrupt EXIF' in line]
  assert len(mentions) == 1 and 'odd.jpg' in mentions[0]
  assert Image.open(tmp_path / 'out' / 'odd.png').size == (40, 40)


@pytest.mark.parametrize('code, fix', [
    (errno.EROFS, 'read-only'), (errno.ENOSPC, 'free disk space'),
    (errno.EACCES, 'permissions'), (errno.ENOENT, 'does not exist')])
def test_an_os_error_at_a_commands_edge_is_one_line_naming_path_and_errno(code, fix):
  def main(argv):
    del argv
    raise OSError(code, os.strerror(code), '/data/runs/x')

  with pytest.raises(SystemExit) as stop:
    cli.run_main(main, ['command'])
  message = stop.value.code
  assert isinstance(message, str) and '\n' not in message
  assert message.startswith('error: /data/runs/x: ') and errno.errorcode[code] in message
  assert fix in message


def test_sigterm_during_derain_removes_the_partial_file_and_the_rerun_resumes(
    smoke_workdir, tmp_path):
  folder, out = tmp_path / 'in', tmp_path / 'out'
  folder.mkdir()
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(folder / 'a_small.png')
  Image.fromarray(rng.integers(0, 256, (1600, 1600, 3), np.uint8)).save(folder / 'b_large.png')
  command = [sys.executable, '-m', 'jaxderain.derain', f'--workdir={smoke_workdir}',
             f'--input={folder}', f'--output={out}', '--tile=32', '--overlap=8']
  run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
  while not list(out.glob('.b_large.png.*.partial')):  # the stop point: mid-write
    assert run.poll() is None, 'derain finished before it was stopped'
    time.sleep(0.01)
  run.send_signal(signal.SIGTERM)
  _, stderr = run.communicate(timeout=300)
  assert run.returncode == 143 and 'stopped by SIGTERM' in stderr, stderr[-3000:]
  assert sorted(p.name for p in out.iterdir()) == ['.derain.json', 'a_small.png']
  first = (out / 'a_small.png').read_bytes()
  rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         check=False)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert json.loads(rerun.stdout.strip().splitlines()[-1])['written'] == 1  # only b_large
  assert (out / 'a_small.png').read_bytes() == first
  assert Image.open(out / 'b_large.png').size == (1600, 1600)


def test_sigterm_landing_in_a_finalizer_still_stops_derain_between_tile_batches():
  """Python drops an exception raised in a finalizer (__del__), the handler's exit with it;
  derain's stop event is set all the same and ends the run at the next tile batch."""
  script = '\n'.join([
      'import signal, sys', 'from jaxderain import derain', 'dropped = []',
      'sys.unraisablehook = lambda report: dropped.append(report.exc_type)',
      'stopped = derain._stop_on_sigterm()',
      'class Finalized:', '  def __del__(self): signal.raise_signal(signal.SIGTERM)',
      'Finalized()', 'assert dropped == [SystemExit] and stopped.is_set(), dropped',
      'derain._exit_if_set(stopped)', 'print("went on")'])
  result = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 143 and 'went on' not in result.stdout, result.stderr[-3000:]
  assert result.stderr.count('stopped by SIGTERM') == 1


def value_the_message_allows(message: str, kind: type):
  """A value inside the range a range error states ('in [0, 1)', '> 0', '>= 1')."""
  found = re.search(r'must be (?:in ([\[(])(\S+), (\S+?)([\])])|([>]=?) (\S+)), got', message)
  assert found, message
  if found.group(5):
    low, inclusive = float(found.group(6)), found.group(5) == '>='
    value = low if inclusive else low + (1 if kind is int else 0.5)
  else:
    low, high = float(found.group(2)), float(found.group(3))
    value = low if found.group(1) == '[' else (low + high) / 2
  return kind(value)


@pytest.mark.parametrize('field', [f for f in grid.FIELDS if f.low is not None],
                         ids=lambda f: f.name)
def test_every_range_error_states_a_range_whose_values_are_accepted(field):
  config = grid.get_config(SMOKE_POINT.split(':')[1])
  below = field.low - 1 if field.kind is int else field.low - 0.5
  field.write(config, field.kind(below))
  with pytest.raises(ConfigError, match=f'config.{field.name} must be .* set '
                                        f'--config.{field.name}') as refused:
    checks.resolve(config)
  allowed = value_the_message_allows(str(refused.value), field.kind)
  field.write(config, allowed)
  assert field.read(config) == allowed
  checks.resolve(config)  # the advised value is accepted


def test_extra_test_categories_that_are_not_names_are_refused_with_a_flag_that_works():
  config = grid.get_config(SMOKE_POINT.split(':')[1])
  config.eval.extra_categories = TupleParser().parse('0')  # as --config.eval...=0 sets it
  with pytest.raises(ConfigError, match='extra_categories must name background') as refused:
    checks.resolve(config)
  for advised in re.findall(r'--config.eval.extra_categories=([^"]+?)(?:"| or)',
                            str(refused.value)):
    config.eval.extra_categories = TupleParser().parse(advised)
    assert checks.resolve(config).tests.extra_categories == config.eval.extra_categories


def test_convert_on_a_workdir_another_process_trains_is_refused_and_changes_nothing(
    trained):
  training = subprocess.Popen(['sleep', '120'])  # stands for the live training process
  try:
    (trained / 'run.lock').write_text(json.dumps(
        {'host': socket.gethostname(), 'pid': training.pid, 'purpose': 'training',
         'started': 'now'}))
    before = (trained / 'config.json').read_bytes()
    result, = run_commands('jaxderain.convert', [
        '--config=configs/grid.py:swinir,medium,8,scale=smoke',
        f'--torch={trained / "missing.pt"}', f'--workdir={trained}'])
  finally:
    training.kill()
    training.wait()
  lines = error_lines(result)
  assert result.returncode == 1 and len(lines) == 1, result.stderr[-3000:]
  assert f'in use: training by PID {training.pid}' in lines[0]
  assert (trained / 'config.json').read_bytes() == before


def test_a_read_only_filesystem_under_the_lock_is_one_line(tmp_path, monkeypatch):
  def read_only(self, *args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

  monkeypatch.setattr(pathlib.Path, 'mkdir', read_only)
  with pytest.raises(WorkdirError, match=r'run is not writable \(Read-only file system\)'):
    with workdir_lock.hold(tmp_path / 'run', 'training'):
      pass
