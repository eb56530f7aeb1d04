"""Train or evaluate one grid point.

  python launch.py --config=configs/grid.py:resnet,medium,64,scale=cpu --workdir=runs/demo
  python launch.py --config=configs/grid.py:resnet,medium,64,scale=cpu --workdir=runs/demo \
      --mode=eval

Several processes (hosts) train one run when each is started with the same command:
TPU VM slices, SLURM (srun) and Open MPI (mpirun) are detected; elsewhere pass
--coordinator_address=HOST:PORT (process 0's) --num_processes=N --process_id=I.
"""

from jaxderain import cpu_flags

_FAST_FLAG = cpu_flags.apply_fast_cpu_flag()  # before JAX starts its backend

import os  # pylint: disable=g-import-not-at-top
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from jaxderain import console, distributed, experiment
from jaxderain.workdir import WorkdirError
from jaxderain.data import ImageError
from jaxderain.train.checkpoints import CheckpointError, SaveError
from jaxderain.train.loop import PREEMPTED_EXIT_CODE, NonFiniteError, Preempted

_CONFIG = config_flags.DEFINE_config_file('config', None, 'configs/grid.py:ARCH,RAIN,N[,k=v]',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and eval.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval'], 'Train, or evaluate the '
                          'latest checkpoint of --workdir.')
_ALLOW_CHANGE = flags.DEFINE_bool('allow_config_change', False, 'Continue (or evaluate) a '
                                   'workdir trained with different training fields.')
_DISTRIBUTED = flags.DEFINE_enum(
    'distributed', 'auto', ['auto', 'on', 'off'], 'Start jax.distributed (one run over '
    'several processes): auto = when --coordinator_address, --num_processes and --process_id '
    'are given or the environment says this is one of several processes (TPU slice, '
    'SLURM_NTASKS>1, OMPI_COMM_WORLD_SIZE>1, JAX_COORDINATOR_ADDRESS).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, "Process 0's HOST:PORT, the "
                                   'same for every process (clusters JAX does not detect).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'The number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, "This process's id, 0 to N-1.")
_DISTRIBUTED_TIMEOUT = flags.DEFINE_integer('distributed_timeout', 300, 'Seconds to wait '
                                            'for every process to join the run.')
flags.mark_flags_as_required(['config', 'workdir'])


def _parse_flags(argv):
  """Flags, with a bad --config reported as its one-line message, not a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    message = str(error).strip().splitlines()[-1].removeprefix('ValueError: ').strip()
  except (AttributeError, KeyError) as error:
    message = (f'a --config.FIELD override names no field of the config ({error}); the '
               'fields are listed in configs/grid.py.')
  sys.exit(f'error: {message}\nSee --helpshort for the flags.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  console.quiet_library_logs()
  try:
    started = distributed.initialize(_DISTRIBUTED.value, _COORDINATOR.value,
                                     _NUM_PROCESSES.value, _PROCESS_ID.value,
                                     _DISTRIBUTED_TIMEOUT.value, os.environ)
  except distributed.DistributedError as error:
    sys.exit(f'error: {error}')
  if started:
    logging.info('Process %d of %d (%s); its devices: %s', jax.process_index(),
                 jax.process_count(), started, jax.local_devices())
  logging.info('Devices: %s; XLA flag set by jaxderain: %s', jax.devices(), _FAST_FLAG)
  try:
    run = experiment.train if _MODE.value == 'train' else experiment.evaluate
    run(_CONFIG.value, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)
  except Preempted as stop:
    print(f'jaxderain: {stop}', file=sys.stderr)
    sys.exit(PREEMPTED_EXIT_CODE)
  except SaveError as error:
    # Writes of the failed save may still be in flight in tensorstore's threads; at
    # interpreter shutdown they would echo the failure as tracebacks. Leave at once.
    print(f'error: {error}', file=sys.stderr, flush=True)
    os._exit(1)  # pylint: disable=protected-access
  except (experiment.ConfigError, ImageError, FileNotFoundError, CheckpointError,
          NonFiniteError, WorkdirError) as error:
    sys.exit(f'error: {error}')


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
