"""Run a few train steps of a smoke grid point and print losses and parameters as JSON.

Used by tests in child processes, so each can start JAX with its own XLA_FLAGS:
  python tests/run_steps.py STEPS [key=value config overrides]
"""

import json
import sys


import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from jaxderain import experiment
from jaxderain.configs import grid
from jaxderain.distributed import replicate


def main():
  steps = int(sys.argv[1])
  config = grid.get_config('resnet,medium,16,scale=smoke')
  for pair in sys.argv[2:]:
    key, value = pair.split('=')
    config[key] = type(config[key])(value)
  state, train_step, backgrounds = experiment.build_training(config)
  mesh = experiment.device_mesh()
  state, backgrounds = replicate(state, mesh), replicate(backgrounds, mesh)
  losses = []
  for _ in range(steps):
    state, metrics = train_step(state, backgrounds)
    losses.append(float(metrics['loss']))
  params = [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(state.params)]
  print(json.dumps({'devices': jax.device_count(), 'losses': losses, 'params': params}))


if __name__ == '__main__':
  main()
