"""Shared pieces of the benchmarks: timing train steps, reporting JSON with the machine.

Imports jax alone at module level, so `report` also serves benchmarks that must run where
only jax, flax, optax, numpy, absl and ml_collections are installed (no clu, PIL, tfds)."""

import json
import os
import pathlib
import platform
import statistics
import time

import jax


def time_steps(config, steps: int) -> dict:
  from jaxderain import experiment  # pylint: disable=g-import-not-at-top
  from jaxderain.train.step import replicate  # pylint: disable=g-import-not-at-top
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
