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

import jax
import numpy as np
import pytest

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
  experiment.check_workdir_path('/mnt/bucket/run')


def free_port() -> int:
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


def test_unreachable_coordinator_is_one_clear_error():
  start = time.monotonic()
  with pytest.raises(distributed.DistributedError, match='could not reach the coordinator'):
    distributed.wait_for_coordinator(f'127.0.0.1:{free_port()}', process_id=1, timeout_s=1)
  assert time.monotonic() - start < 10


def launch_processes(count: int, args: list[str], logdir: pathlib.Path,
                     sigterm_to: int | None = None) -> list[tuple[int, str]]:
  """Run launch.py as `count` CPU processes of one run (one device each) on loopback;
  (exit code, stderr) per process. SIGTERM goes to process `sigterm_to` once it has
  started jax.distributed (whose preemption sync then handles it)."""
  flags = f'{os.environ.get("XLA_FLAGS", "")} --xla_force_host_platform_device_count=1'
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': flags.strip()}
  command = [sys.executable, 'launch.py', *args, f'--num_processes={count}',
             f'--coordinator_address=127.0.0.1:{free_port()}', '--distributed_timeout=120']
  logdir.mkdir(exist_ok=True)
  logs = [logdir / f'process_{i}.log' for i in range(count)]
  processes = []
  try:
    for i, log in enumerate(logs):
      with open(log, 'w') as stderr:
        processes.append(subprocess.Popen([*command, f'--process_id={i}'], cwd=ROOT, env=env,
                                          stdout=subprocess.DEVNULL, stderr=stderr))
    if sigterm_to is not None:
      deadline = time.monotonic() + 120
      while (f'Process {sigterm_to} of' not in logs[sigterm_to].read_text()
             and time.monotonic() < deadline):
        time.sleep(0.2)
      processes[sigterm_to].send_signal(signal.SIGTERM)
    codes = [process.wait(timeout=300) for process in processes]
    return list(zip(codes, [log.read_text() for log in logs]))
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()


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

  stopped = launch_processes(2, args, tmp_path / 'logs_stopped', sigterm_to=1)
  assert [code for code, _ in stopped] == [143, 143], stopped[0][1][-3000:]
  steps = {int(err.split('stopped by SIGTERM at step ')[1].split(';')[0]) for _, err in stopped}
  assert len(steps) == 1  # both processes stopped at the same step
  stop_step = steps.pop()
  assert stop_step < config.total_steps
  saved = sorted(p.name for p in (tmp_path / 'two' / 'checkpoints').iterdir())
  assert saved == [str(stop_step)]

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
