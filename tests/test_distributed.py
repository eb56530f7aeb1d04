"""Multi-process runs: when jax.distributed starts, its errors, and two CPU processes on
loopback training one run like one process does."""

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import types

import jax
import numpy as np
import pytest
from jax.experimental import multihost_utils

from jaxderain import distributed, experiment
from jaxderain import errors
from jaxderain import workdir as workdir_module
from jaxderain.configs import grid
from jaxderain.train import checkpoints

ROOT = pathlib.Path(__file__).resolve().parents[1]


def no_tpu(environ):
  return 1


@pytest.mark.parametrize('environ, reason', [
    ({}, None),
    ({'SLURM_NTASKS': '1', 'OMPI_COMM_WORLD_SIZE': '1'}, None),
    ({'SLURM_NTASKS': '4'}, 'SLURM_NTASKS=4'),
    ({'OMPI_COMM_WORLD_SIZE': '2'}, 'OMPI_COMM_WORLD_SIZE=2'),
    ({'JAX_COORDINATOR_ADDRESS': '10.0.0.1:1234'}, 'JAX_COORDINATOR_ADDRESS=10.0.0.1:1234'),
    ({'TPU_WORKER_HOSTNAMES': 'w0,w1'}, 'TPU_WORKER_HOSTNAMES lists 2 workers'),
])
def test_auto_detects_several_processes_from_the_environment(environ, reason):
  assert distributed.multi_process_reason(environ, no_tpu) == reason


def test_auto_detects_a_tpu_slice_and_starts_nothing_alone():
  assert distributed.multi_process_reason({}, lambda _: 4) == 'a TPU slice of 4 workers'
  assert distributed.initialize('auto', environ={}, tpu_workers=no_tpu) is None
  assert distributed.initialize('off', environ={'SLURM_NTASKS': '4'}) is None


@pytest.mark.parametrize('mode, address, count, index, message', [
    ('off', '127.0.0.1:1234', 2, 0, 'given with --distributed=off'),
    ('auto', '127.0.0.1:1234', None, 0, 'given without --num_processes'),
    ('auto', '127.0.0.1', 2, 0, 'is not HOST:PORT'),
    ('on', '127.0.0.1:1234', 2, 2, '--process_id=2 is not in 0..1'),
])
def test_bad_process_flags_are_one_clear_error(mode, address, count, index, message):
  with pytest.raises(distributed.DistributedError, match=re.escape(message)):
    distributed.initialize(mode, address, count, index, environ={})


def test_a_url_workdir_is_one_clear_error():
  with pytest.raises(errors.WorkdirError, match='is a URL.*mount the bucket'):
    workdir_module.check_workdir_path('gs://bucket/run')
  workdir_module.check_workdir_path('/mnt/bucket/run')


def free_port() -> int:
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


def test_unreachable_coordinator_is_one_clear_error(monkeypatch):
  """It retries until its timeout, then gives up: on a clock that moves only when it
  sleeps, so the count does not depend on how busy the machine is."""
  clock, attempts = [0.0], []
  real_connect = socket.create_connection

  def connect(*args, **kwargs):
    attempts.append(clock[0])
    return real_connect(*args, **kwargs)  # refused: nothing listens on the port

  def sleep(seconds):
    clock[0] += seconds
    assert clock[0] < 300, 'still retrying long after the timeout'

  monkeypatch.setattr(distributed, 'time',
                      types.SimpleNamespace(monotonic=lambda: clock[0], sleep=sleep))
  monkeypatch.setattr(distributed, 'socket', types.SimpleNamespace(create_connection=connect))
  with pytest.raises(distributed.DistributedError, match='could not reach the coordinator'):
    distributed.wait_for_coordinator(f'127.0.0.1:{free_port()}', process_id=1, timeout_s=30)
  assert attempts[0] == 0.0 and len(attempts) > 2  # tried at once, and retried
  assert 30.0 < clock[0] <= 31.0  # gave up once the 30 s had passed, not before


def launch_processes(count: int, args: list[str], logdir: pathlib.Path,
                     sigterm_to: int | None = None, pause_at: int = 0
                     ) -> list[tuple[int, str]]:
  """Run launch.py as `count` CPU processes of one run (one device each) on loopback;
  (exit code, stderr) per process.

  With `sigterm_to`, every process pauses after saving checkpoint `pause_at`
  (tests/paused_launch.py); SIGTERM then goes to that process, and once every process
  has logged the step jax.distributed's preemption sync chose, they carry on. The run
  cannot end before the signal, and the step is the one after the paused one."""
  flags = f'{os.environ.get("XLA_FLAGS", "")} --xla_force_host_platform_device_count=1'
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': flags.strip(),
         'TF_CPP_MIN_LOG_LEVEL': '0'}  # the preemption sync's log lines
  command = [f'--num_processes={count}', f'--coordinator_address=127.0.0.1:{free_port()}',
             '--distributed_timeout=120', *args]
  logdir.mkdir(exist_ok=True)
  logs = [logdir / f'process_{i}.log' for i in range(count)]
  markers = [logdir / f'paused_{i}' for i in range(count)]
  processes = []
  try:
    for i, log in enumerate(logs):
      program = (['launch.py'] if sigterm_to is None else
                 ['tests/paused_launch.py', 'saved', str(pause_at), str(markers[i])])
      with open(log, 'w') as stderr:
        processes.append(subprocess.Popen([sys.executable, *program, *command,
                                           f'--process_id={i}'], cwd=ROOT, env=env,
                                          stdout=subprocess.DEVNULL, stderr=stderr))
    if sigterm_to is not None:
      until(lambda: all(m.exists() for m in markers), processes, logs)
      processes[sigterm_to].send_signal(signal.SIGTERM)
      until(lambda: all('Preemption sync counter is set' in log.read_text()
                        for log in logs), processes, logs)
      for marker in markers:
        marker.with_name(marker.name + '.go').touch()
    codes = [process.wait(timeout=600) for process in processes]
    return list(zip(codes, [log.read_text() for log in logs]))
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()


def until(condition, processes, logs, timeout=600):
  """Wait for condition(); fail with the logs if a process ends first. (`timeout` only
  guards against a hang.)"""
  deadline = time.monotonic() + timeout
  while not condition():
    if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
      pytest.fail('a process ended or hung before the expected point:\n' +
                  '\n'.join(log.read_text()[-2000:] for log in logs))
    time.sleep(0.05)


def logged_losses(stderr: str) -> dict[int, float]:
  """{step: loss} from the console's progress lines ('step 7/10  loss 0.14503 ...')."""
  return {int(step): float(loss) for step, loss in
          re.findall(r'step (\d+)/\d+  loss ([-+.e\d]+)', stderr)}


def test_two_processes_train_like_one_and_stop_together(tmp_path):
  """Two processes: SIGTERM to one stops both at one step, saved once; the rerun resumes
  in both and ends with the losses and parameters of a one-process run."""
  overrides = dict(total_steps=10, checkpoint_every=5, log_every=1)
  config = grid.get_config('resnet,medium,16,scale=smoke')
  config.update(overrides)
  args = ['--config=configs/grid.py:resnet,medium,16,scale=smoke',
          *[f'--config.{k}={v}' for k, v in overrides.items()], f'--workdir={tmp_path / "two"}']

  stopped = launch_processes(2, args, tmp_path / 'logs_stopped', sigterm_to=1, pause_at=5)
  assert [code for code, _ in stopped] == [143, 143], stopped[0][1][-3000:]
  steps = [int(err.split('stopped by SIGTERM at step ')[1].split(';')[0]) for _, err in stopped]
  assert steps == [6, 6]  # both, at the step after the one both had reached
  stop_step = steps[0]
  saved = sorted(p.name for p in (tmp_path / 'two' / 'checkpoints').iterdir())
  assert saved == ['5', '6']  # the regular save, and the stop step's once

  resumed = launch_processes(2, args, tmp_path / 'logs_resumed')
  assert [code for code, _ in resumed] == [0, 0], resumed[0][1][-3000:]
  for _, err in resumed:
    assert f'Resuming from checkpoint at step {stop_step}.' in err

  one_state, one_history = experiment.train(config, str(tmp_path / 'one'))
  one_losses = {h['step']: h['loss'] for h in one_history}
  two_losses = logged_losses(resumed[0][1])
  assert sorted(two_losses) == list(range(stop_step + 1, config.total_steps + 1))
  assert logged_losses(resumed[1][1]) == two_losses
  np.testing.assert_allclose([two_losses[s] for s in sorted(two_losses)],
                             [one_losses[s] for s in sorted(two_losses)], rtol=1e-4)
  _, _, template, _ = experiment.state_template(config)
  two_state = checkpoints.restore(checkpoints.checkpoint_manager(tmp_path / 'two'), template)
  assert int(two_state.step) == config.total_steps
  for a, b in zip(jax.tree.leaves(one_state.params), jax.tree.leaves(two_state.params)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=2e-5)
  assert len(list((tmp_path / 'two').glob('events.out.tfevents.*'))) == 2  # process 0's, a run
  assert (tmp_path / 'two' / 'config.json').read_text() == (
      tmp_path / 'one' / 'config.json').read_text()


def test_checkpoint_saves_leave_the_preemption_sync_to_the_train_loop(tmp_path, monkeypatch):
  """jax's preemption sync stops every process at the step after the furthest one any
  has reported. The train loop reports each step once, in order; orbax would also report
  a checkpoint's step from its saving thread, after the loop moved on, and a SIGTERM then
  could stop the processes at different steps (they then crash in mismatched
  collectives). So saving reports nothing."""
  reported = []
  monkeypatch.setattr(multihost_utils, 'reached_preemption_sync_point',
                      lambda step: reported.append(step) or False)
  manager = checkpoints.checkpoint_manager(tmp_path, keep=2)
  for step in (1, 2, 3):
    checkpoints.save(manager, step, {'w': np.full(4, float(step))})
  checkpoints.wait(manager)
  assert manager.all_steps() == [2, 3]
  assert reported == []
