"""Train or evaluate one grid point: launch.py at the repository's top, or from anywhere
once the package is installed, `python -m jaxderain.launch`.

  python launch.py --config=configs/grid.py:resnet,medium,64,scale=cpu --workdir=runs/demo
  python launch.py --config=configs/grid.py:resnet,medium,64,scale=cpu --workdir=runs/demo \
      --mode=eval

Several processes (hosts) train one run when each is started with the same command:
TPU VM slices, SLURM (srun) and Open MPI (mpirun) are detected; elsewhere pass
--coordinator_address=HOST:PORT (process 0's) --num_processes=N --process_id=I.
"""

import os
import sys

import jax
from absl import flags, logging
from ml_collections import config_flags

from jaxderain import cli, configs, distributed, experiment

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


def main(argv):
  cli.no_arguments(argv)
  started = distributed.initialize(_DISTRIBUTED.value, _COORDINATOR.value,
                                   _NUM_PROCESSES.value, _PROCESS_ID.value,
                                   _DISTRIBUTED_TIMEOUT.value, os.environ)
  if started:
    logging.info('Process %d of %d (%s); its devices: %s', jax.process_index(),
                 jax.process_count(), started, jax.local_devices())
  logging.info('Devices: %s; XLA_FLAGS: %s', jax.devices(), os.environ.get('XLA_FLAGS'))
  run = experiment.train if _MODE.value == 'train' else experiment.evaluate
  run(_CONFIG.value, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)


def run() -> None:
  """The command line (`--config=configs/grid.py:...` finds the packaged grid file when
  the working directory has none)."""
  sys.argv = configs.with_packaged_grid(sys.argv)
  cli.run(main)


if __name__ == '__main__':
  run()
