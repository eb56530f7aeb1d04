"""Multi-process runs: when jax.distributed starts, and its errors."""

import re
import socket
import time

import pytest

from jaxderain import distributed


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


def free_port() -> int:
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


def test_unreachable_coordinator_is_one_clear_error():
  start = time.monotonic()
  with pytest.raises(distributed.DistributedError, match='could not reach the coordinator'):
    distributed.wait_for_coordinator(f'127.0.0.1:{free_port()}', process_id=1, timeout_s=1)
  assert time.monotonic() - start < 10
