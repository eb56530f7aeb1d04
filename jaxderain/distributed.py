"""Multi-process runs: when to start jax.distributed, starting it, waiting for all, and
the data-parallel mesh over every process's devices with arrays replicated on it.

A multi-process run is the same command started once per host (a TPU VM slice) or once
per GPU (SLURM, Open MPI). Once jax.distributed is started, jax.devices() lists the
devices of every process and a mesh over them spans all hosts; each process feeds and
computes on its own devices (jax.local_devices()).
"""

from __future__ import annotations

import importlib.util
import pathlib
import socket
import time
import urllib.request
from typing import Callable, Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec
from jaxderain.errors import first_line, DistributedError

# The metadata of a Cloud TPU VM: one comma-separated entry per worker of its slice.
_TPU_WORKERS_URL = ('http://metadata.google.internal/computeMetadata/v1/instance/'
                    'attributes/worker-network-endpoints')
_FLAGS = ('--coordinator_address', '--num_processes', '--process_id')


def tpu_worker_count(environ: Mapping[str, str]) -> int:
  """The number of workers (hosts) of this Cloud TPU VM's slice; 1 off TPU VMs."""
  if importlib.util.find_spec('libtpu') is None or 'TPU_SKIP_MDS_QUERY' in environ:
    return 1
  request = urllib.request.Request(_TPU_WORKERS_URL, headers={'Metadata-Flavor': 'Google'})
  try:
    with urllib.request.urlopen(request, timeout=5) as response:
      return len(response.read().decode().strip().split(','))
  except OSError:  # no metadata server: not a GCE TPU VM
    return 1


def _count(value: str | None) -> int:
  return int(value) if value and value.strip().isdigit() else 0


def multi_process_reason(environ: Mapping[str, str],
                         tpu_workers: Callable[[Mapping[str, str]], int] = tpu_worker_count
                         ) -> str | None:
  """What in `environ` says this process is one of several (e.g. 'SLURM_NTASKS=4'), or
  None if nothing does."""
  if environ.get('JAX_COORDINATOR_ADDRESS'):
    return f'JAX_COORDINATOR_ADDRESS={environ["JAX_COORDINATOR_ADDRESS"]}'
  for name in ('SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'):
    if _count(environ.get(name)) > 1:
      return f'{name}={environ[name]}'
  hostnames = [h for h in environ.get('TPU_WORKER_HOSTNAMES', '').split(',') if h]
  if len(hostnames) > 1:
    return f'TPU_WORKER_HOSTNAMES lists {len(hostnames)} workers'
  workers = tpu_workers(environ)
  return f'a TPU slice of {workers} workers' if workers > 1 else None


def initialize(mode: str, coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               timeout_s: int = 300, environ: Mapping[str, str] | None = None,
               tpu_workers: Callable[[Mapping[str, str]], int] = tpu_worker_count
               ) -> str | None:
  """Start jax.distributed if `mode` says so: 'on' always, 'off' never, 'auto' when the
  three explicit values are given or `environ` says this is one of several processes.

  Call before any JAX computation. The explicit values (all three or none) are for
  clusters JAX does not detect, and for processes on one machine (127.0.0.1:PORT).
  Returns why it started (for the log), or None for a single-process run; raises
  DistributedError, naming the fix, when the processes cannot start together.
  """
  explicit = dict(zip(_FLAGS, (coordinator_address, num_processes, process_id)))
  given = [name for name, value in explicit.items() if value is not None]
  if given and mode == 'off':
    raise DistributedError(f'{", ".join(given)} given with --distributed=off: drop them for a '
                           'single-process run, or pass --distributed=auto.')
  if given and len(given) < len(_FLAGS):
    missing = [name for name in _FLAGS if name not in given]
    raise DistributedError(f'{", ".join(given)} given without {", ".join(missing)}: pass all '
                           'three (process 0\'s HOST:PORT, the number of processes, and '
                           'this process\'s id, 0 to N-1), or none.')
  if coordinator_address is not None and not _port(coordinator_address).isdigit():
    raise DistributedError(f'--coordinator_address={coordinator_address} is not HOST:PORT: '
                           "pass process 0's host and a free port, e.g. 10.0.0.1:1234.")
  if given and not 0 <= process_id < num_processes:
    raise DistributedError(f'--process_id={process_id} is not in 0..{num_processes - 1} '
                           f'(--num_processes={num_processes}): number the processes 0 to N-1.')
  if mode == 'off':
    return None
  reason = ' '.join(f'{n}={v}' for n, v in explicit.items()) if given else (
      multi_process_reason({} if environ is None else environ, tpu_workers))
  if mode == 'auto' and reason is None:
    return None
  if process_id:  # jaxlib aborts the process if it cannot reach the coordinator
    wait_for_coordinator(coordinator_address, process_id, timeout_s)
  try:
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               initialization_timeout=timeout_s)
  except (ValueError, TypeError) as error:
    raise DistributedError(
        f'--distributed={mode} found no multi-process cluster ({first_line(error)}): pass '
        f'{", ".join(_FLAGS)}, or run under SLURM (srun), Open MPI (mpirun) or on a '
        'multi-host TPU VM slice, which set them.') from None
  except Exception as error:  # jaxlib raises its own runtime errors  # pylint: disable=broad-except
    address = coordinator_address or 'the address the cluster gives'
    raise DistributedError(
        f'jax.distributed could not start ({type(error).__name__}: {first_line(error)}). '
        f'If process 0 failed to start the coordinator, the port of {address} is in use: '
        'pick a free one for every process.') from None
  return reason or 'requested by --distributed=on'


def wait_for_coordinator(address: str, process_id: int, timeout_s: float) -> None:
  """Wait until the coordinator HOST:PORT accepts connections (process 0 listens there
  once started); DistributedError after `timeout_s` seconds."""
  host = address.rpartition(':')[0].strip('[]')
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host, int(_port(address))), timeout=5):
        return
    except OSError as error:
      if time.monotonic() > deadline:
        raise DistributedError(
            f'process {process_id} could not reach the coordinator at {address} within '
            f'{timeout_s} s ({error}): start process 0 as well, and pass every process the '
            "same --coordinator_address, process 0's HOST:PORT as seen from the other hosts "
            '(or raise --distributed_timeout if process 0 starts late).') from None
      time.sleep(0.5)


def barrier(name: str) -> None:
  """Wait until every process has reached the barrier `name` (no-op for one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def processes_not_seeing(folder: pathlib.Path) -> list[int]:
  """The ids of the processes that do not see a file process 0 writes into `folder`
  (a folder every process has); [] when all see it, as on a shared filesystem."""
  if jax.process_count() == 1:
    return []
  marker = folder / '.written_by_process_0'
  if jax.process_index() == 0:
    marker.write_bytes(b'')
  barrier('process 0 has written its marker')
  seen = multihost_utils.process_allgather(np.array(marker.exists()))
  if jax.process_index() == 0:
    marker.unlink()
  return [int(i) for i in np.flatnonzero(~seen)]


def device_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh over every device, axis 'data' (batch-parallel)."""
  return jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicate(tree, mesh: jax.sharding.Mesh):
  """Place every array of `tree` on all devices of `mesh`, which may span processes;
  every process passes the same values. (jax 0.10.2's device_put of an array already on
  a device gives a broken array when each process has a single device.)"""
  replicated = NamedSharding(mesh, PartitionSpec())
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(replicated, np.asarray(x)), tree)


def _port(address: str) -> str:
  return address.rpartition(':')[2] if ':' in address else ''
