"""Shared pieces of the benchmarks: the configs of the speed comparison, timing train steps,
reporting JSON with the machine.

Imports nothing that needs clu, PIL or tfds at module level, so benchmarks built on it run
where only jax, flax, optax, numpy, absl and ml_collections are installed (a GPU box)."""

import json
import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxderain import models
from jaxderain.configs import grid
from jaxderain.rain import TRAINING_RANGES
from jaxderain.distributed import device_mesh, replicate
from jaxderain.train.step import init_state, make_optimizer, make_train_step

# Configs of the JAX-vs-PyTorch comparison (issue 6), name -> (arch, model options, batch,
# patch side): a-c the ResNet at three sizes, then the `cpu` presets of configs/grid.py.
_RESNET = 'resnet'
CONFIGS = {
    'a': (_RESNET, dict(features=64, num_blocks=16), 16, 128),
    'b': (_RESNET, dict(features=64, num_blocks=16), 8, 64),
    'c': (_RESNET, dict(features=32, num_blocks=8), 8, 64),
    'cpu': (_RESNET, grid.MODELS['resnet']['cpu'], 8, 64),
    'unet': ('unet', grid.MODELS['unet']['cpu'], 8, 64),
    'swinir': ('swinir', grid.MODELS['swinir']['cpu'], 8, 64),
}
LEARNING_RATE = 2e-4


def jax_step(arch, hparams, batch, patch, compute_dtype=jnp.float32):
  """(model, run) where run() is one of jaxderain's train steps (blocking until done),
  on a random uint8 background set of 64 patches; `model` holds the initial weights."""
  model = models.create(arch, hparams, seed=0)
  tx = make_optimizer(LEARNING_RATE, 0.9, 0.99, total_steps=10_000)
  graphdef, state = init_state(model, tx, jax.random.PRNGKey(1))
  mesh = device_mesh()
  step = make_train_step(graphdef, models.get(arch).loss('l1'), tx, TRAINING_RANGES['medium'],
                         batch, True, mesh, compute_dtype)
  backgrounds = np.random.default_rng(0).integers(0, 256, (64, patch, patch, 3), np.uint8)
  holder = {'state': replicate(state, mesh), 'backgrounds': replicate(backgrounds, mesh)}

  def run():
    holder['state'], metrics = step(holder['state'], holder['backgrounds'])
    jax.block_until_ready(metrics)

  return model, run


def time_calls(call, steps: int) -> dict:
  """Seconds of `call()` (which waits for its results): the first call (compilation
  included), then the median and min of `steps` calls after one more warm-up."""
  start = time.perf_counter()
  call()
  first = time.perf_counter() - start
  call()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return {'first_s': first, 'median_s': statistics.median(times), 'min_s': min(times)}


def time_steps(config, steps: int) -> dict:
  """Compile-and-first-step time and the median of `steps` further train steps."""
  from jaxderain import experiment  # pylint: disable=g-import-not-at-top
  state, train_step, backgrounds = experiment.build_training(config)
  mesh = experiment.device_mesh()
  holder = {'state': replicate(state, mesh)}
  backgrounds = replicate(backgrounds, mesh)

  def step():
    holder['state'], metrics = train_step(holder['state'], backgrounds)
    jax.block_until_ready(metrics)

  times = time_calls(step, steps)
  return {'median_step_s': times['median_s'], 'min_step_s': times['min_s'],
          'steps_timed': steps, 'first_step_s': times['first_s']}


def report(results: list[dict], out: str) -> None:
  """Add the machine to each result, print one JSON line each, write them all to `out`."""
  machine = {'machine': f'{platform.machine()}, {os.cpu_count()} cores',
             'devices': str(jax.devices()), 'xla_flags': os.environ.get('XLA_FLAGS', ''),
             'jax': jax.__version__}
  results = [{**result, **machine} for result in results]
  for result in results:
    print(json.dumps(result), flush=True)
  path = pathlib.Path(out)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(results, indent=1))
