"""Shared pieces of the benchmarks: timing train steps, reporting JSON with the machine."""

import json
import os
import pathlib
import platform
import statistics
import time

import jax

from jaxderain import experiment
from jaxderain.train.step import replicate


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
