"""Nothing lost: bad inputs stop before any work with one line, outputs never overwrite
inputs, a workdir serves one run at a time. Marker: reliability."""

import errno
import json
import logging
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import types

import pytest

from conftest import error_lines, point_test_sets, run_commands
from jaxderain import errors
from jaxderain import experiment
from jaxderain.configs import checks, grid

pytestmark = pytest.mark.reliability
ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = 'configs/grid.py:resnet,medium,8,scale=smoke'


def run_cli(*args, timeout=300):
  """A command line of the project in a child; returns the CompletedProcess."""
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout)


@pytest.mark.parametrize('field, value, message', [
    ('keep_checkpoints', 0, 'config.keep_checkpoints must be >= 1, got 0'),
    ('learning_rate', 0.0, 'config.learning_rate must be > 0.0'),
    ('b2', 1.0, r'config.b2 must be in \[0.0, 1.0\)'),
    ('test_fraction', 1.0, r'config.test_fraction must be in \(0.0, 1.0\)'),
    ('eval.num_images', 0, 'config.eval.num_images must be >= 1'),
    ('eval.rain_threshold', 1.5, 'config.eval.rain_threshold must be in'),
])
def test_out_of_range_fields_are_refused(field, value, message):
  config = grid.get_config('resnet,medium,8,scale=smoke')
  *parents, leaf = field.split('.')
  node = config
  for parent in parents:
    node = node[parent]
  node[leaf] = value
  with pytest.raises(errors.ConfigError, match=message):
    checks.resolve(config)


def test_bad_command_lines_are_one_line_before_any_work(tmp_path):
  workdir = tmp_path / 'run'
  (workdir / 'checkpoints' / '10').mkdir(parents=True)  # a checkpoint that must survive
  cases = {
      (f'--config={SMOKE}', '--config.keep_checkpoints=0'):
          'config.keep_checkpoints must be >= 1',
      (f'--config={SMOKE}', '--config.arch=unet'):
          'config.model holds options unet does not take (num_blocks)',
      ('--config=configs/grid.py',): 'no grid point: name one after a colon',
  }
  results = run_commands('launch', *[[*args, f'--workdir={workdir}'] for args in cases])
  for result, message in zip(results, cases.values()):
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
  assert sorted(p.name for p in workdir.rglob('*')) == ['10', 'checkpoints']
  result, = run_commands('jaxderain.study', ['run', '--seeds=abc', f'--out={tmp_path}'])
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  assert error_lines(result) == ['error: --seeds must be integers from 0 to 4294967295 '
                                 'separated by commas, e.g. --seeds=0,1; got abc.']


def train_until_checkpoint_20(workdir, checkpoint_every, *flags):
  """A long smoke training in a child, returned once its checkpoint of step 20 exists."""
  run = subprocess.Popen(
      [sys.executable, 'launch.py', f'--config={SMOKE}', f'--workdir={workdir}',
       '--config.total_steps=100000', f'--config.checkpoint_every={checkpoint_every}',
       *flags],
      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  while not (pathlib.Path(workdir) / 'checkpoints' / '20').is_dir() and time.time() < deadline:
    time.sleep(0.1)
  return run


def test_a_workdir_serves_one_run_and_a_stale_lock_is_taken_over(tmp_path, caplog):
  from jaxderain import workdir as workdir_lock  # pylint: disable=import-outside-toplevel
  lock = tmp_path / workdir_lock.LOCK_NAME
  first = train_until_checkpoint_20(tmp_path, checkpoint_every=20)
  holder = json.loads(lock.read_text())
  assert holder['pid'] == first.pid and holder['purpose'] == 'training'
  for mode in ('train', 'eval'):  # a second writer is refused, naming the holder
    second = run_cli('launch.py', f'--config={SMOKE}', f'--workdir={tmp_path}',
                     '--config.total_steps=100000', '--config.checkpoint_every=20',
                     f'--mode={mode}')
    assert second.returncode != 0, second.stderr[-2000:]
    assert f'is in use: training by PID {first.pid}' in error_lines(second)[-1]
  assert first.poll() is None  # the holder was not disturbed
  first.send_signal(signal.SIGTERM)
  _, err = first.communicate(timeout=300)
  assert first.returncode == 143, err[-2000:]
  assert not lock.exists()  # released on every exit path, SIGTERM included

  dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                        capture_output=True, text=True, check=True)
  lock.write_text(json.dumps({'host': socket.gethostname(), 'pid': int(dead.stdout),
                              'purpose': 'training', 'started': 'earlier'}))
  with caplog.at_level(logging.WARNING):
    with workdir_lock.hold(tmp_path, 'evaluation'):
      assert json.loads(lock.read_text())['pid'] == os.getpid()
  assert 'no longer running' in caplog.text and not lock.exists()
  lock.write_text(json.dumps({'host': 'elsewhere', 'pid': 1, 'purpose': 'training',
                              'started': 'now'}))
  with pytest.raises(workdir_lock.WorkdirBusy, match='training by PID 1 on elsewhere'):
    with workdir_lock.hold(tmp_path, 'evaluation'):
      pass
  assert json.loads(lock.read_text())['host'] == 'elsewhere'  # left to its holder


def test_the_run_config_survives_losing_config_json(tmp_path):
  config = grid.get_config('resnet,medium,8,scale=smoke')
  config.total_steps, config.checkpoint_every = 20, 10
  experiment.train(config, str(tmp_path))
  recorded = json.loads((tmp_path / 'config.json').read_text())
  (tmp_path / 'config.json').unlink()
  changed = grid.get_config('resnet,medium,8,scale=smoke')
  changed.total_steps, changed.checkpoint_every = 30, 10
  changed.learning_rate = 0.01
  with pytest.raises(errors.ConfigError, match=r'learning_rate: 0.0002 -> 0.01'):
    experiment.train(changed, str(tmp_path))
  assert json.loads((tmp_path / 'config.json').read_text()) == recorded  # restored
  (tmp_path / 'config.json').write_text('[1, 2, 3]')
  with pytest.raises(errors.WorkdirError, match='is not a config .* delete it to restore'):
    experiment.train(config, str(tmp_path))
  result = run_cli('launch.py', f'--config={SMOKE}', f'--workdir={tmp_path}')
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  assert 'config.json is not a config' in error_lines(result)[-1]


def test_eval_checks_its_output_folder_before_computing(tmp_path, monkeypatch):
  from jaxderain import workdir as workdir_lock  # pylint: disable=import-outside-toplevel
  from jaxderain.eval import evaluate as evaluate_module  # pylint: disable=import-outside-toplevel
  config = grid.get_config('resnet,medium,8,scale=smoke')
  config.total_steps, config.checkpoint_every = 10, 10
  experiment.train(config, str(tmp_path))
  monkeypatch.setattr(workdir_lock.shutil, 'disk_usage',
                      lambda path: types.SimpleNamespace(total=1, used=0, free=2**20))
  computed = []
  monkeypatch.setattr(evaluate_module, 'evaluate', lambda *a, **k: computed.append(a))
  sets = len(point_test_sets(config))  # the check is sized from the sets built
  with pytest.raises(workdir_lock.WorkdirError, match='has 1 MiB free but the evaluation '
                     f'files need about {sets * 4} MiB'):
    experiment.evaluate(config, str(tmp_path))
  assert not computed and not list((tmp_path / 'eval').iterdir())


@pytest.fixture
def small_disk(tmp_path):
  """A 8 MiB tmpfs (needs root and mount rights; skipped elsewhere)."""
  mount_point = tmp_path / 'disk'
  mount_point.mkdir()
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', str(mount_point)],
                           capture_output=True, check=False)
  if mounted.returncode:
    pytest.skip('cannot mount a tmpfs here (needs root)')
  yield mount_point
  subprocess.run(['umount', str(mount_point)], check=False)


def fill(disk) -> None:
  """Take all but 4 KiB of DISK's free space, while a run may be writing to it."""
  stats = os.statvfs(disk)
  assert stats.f_blocks * stats.f_frsize <= 8 * 2**20, f'{disk} is not the small disk'
  with open(disk / 'filler', 'wb') as filler:
    for _ in range(100):
      stats = os.statvfs(disk)
      room = stats.f_bavail * stats.f_frsize - 4096
      if room <= 0:
        return
      try:
        os.posix_fallocate(filler.fileno(), os.fstat(filler.fileno()).st_size, room)
        return
      except OSError as error:  # the run took some of that space meanwhile: again
        if error.errno != errno.ENOSPC:
          raise
  raise AssertionError(f'could not fill {disk}')


def test_a_full_disk_names_the_step_that_failed_in_one_line(small_disk):
  workdir = small_disk / 'run'
  # No checkpoint is deleted during the test: deleting an old one would free room for the
  # next, and a run whose disk fills just as a save finishes would then go on saving.
  run = train_until_checkpoint_20(workdir, 10, '--config.keep_checkpoints=100')
  try:
    fill(small_disk)  # the disk fills up mid-run
    _, err = run.communicate(timeout=300)
  finally:
    run.kill()  # a run still going (the test failed) must not outlive it, nor hold the disk
    run.wait()
  assert run.returncode == 1
  # orbax's logged tracebacks are kept off the console; tensorstore's C++ callbacks may
  # still echo the failure as "Event loop is closed" tracebacks, and nothing else.
  # (threads may print them into each other's lines, even inside one error's name line)
  raised = set(re.findall(r'([A-Za-z.]+(?:Error|Exception)): ', err))
  assert raised <= {'RuntimeError'}, err[-3000:]
  assert not raised or 'Event loop is closed' in err, err[-3000:]
  assert '] [process=0]' not in err  # none of orbax's own error lines
  complete = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir()
                    if p.name.isdigit())
  message = err.strip().splitlines()[-1]
  failed = int(message.split('checkpoint of step ')[1].split()[0])
  assert failed not in complete and failed % 10 == 0
  assert message.endswith(f'The last good checkpoint is step {complete[-1]}; free disk space '
                          'or fix the folder, then rerun the same command to resume.')
  assert '(No space left on device: the disk is full)' in message
  assert complete[-1] == failed - 10
