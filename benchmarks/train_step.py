"""Median train-step time (after compile) of the ResNet at the paper and cpu scales.

  python benchmarks/train_step.py [--scales=paper,cpu] [--steps=5] [--out=FILE.json]

Prints one JSON object per scale and writes them all to --out
(default benchmarks/results/train_step.json). The XLA CPU flag is applied as launch.py
applies it; set XLA_FLAGS yourself to time another path.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxderain import cpu_flags  # pylint: disable=g-import-not-at-top

FAST_FLAG = cpu_flags.apply_fast_cpu_flag()

import json  # pylint: disable=g-import-not-at-top
import pathlib
import platform
import statistics
import time

import jax
from absl import app, flags

from configs import grid
from jaxderain import experiment
from jaxderain.train.loop import replicate

_SCALES = flags.DEFINE_list('scales', ['paper', 'cpu'], 'Scales of configs/grid.py.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps per scale (after 2 warm-up steps).')
_OUT = flags.DEFINE_string('out', 'benchmarks/results/train_step.json', 'JSON output.')


def time_steps(config, steps: int) -> dict:
  state, train_step, backgrounds = experiment.build_training(config)
  mesh = experiment.device_mesh()
  state, backgrounds = replicate(state, mesh), replicate(backgrounds, mesh)
  start = time.perf_counter()
  state, metrics = train_step(state, backgrounds)
  jax.block_until_ready(metrics)
  compile_and_first = time.perf_counter() - start
  state, metrics = train_step(state, backgrounds)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = train_step(state, backgrounds)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return {'median_step_s': statistics.median(times), 'min_step_s': min(times),
          'steps_timed': steps, 'first_step_s': compile_and_first}


def main(argv):
  del argv
  results = []
  for scale in _SCALES.value:
    config = grid.get_config(f'resnet,medium,64,scale={scale}')
    result = {'benchmark': 'train_step', 'arch': 'resnet', 'scale': scale,
              'model': dict(config.model), 'batch_size': config.batch_size,
              'patch_size': config.patch_size, **time_steps(config, _STEPS.value),
              'devices': str(jax.devices()), 'xla_flags': os.environ.get('XLA_FLAGS', ''),
              'machine': f'{platform.processor() or platform.machine()}, '
                         f'{os.cpu_count()} cores', 'jax': jax.__version__}
    print(json.dumps(result), flush=True)
    results.append(result)
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=1))


if __name__ == '__main__':
  app.run(main)
