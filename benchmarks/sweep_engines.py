"""What the Ray engine costs: a grid run by `study run` with each engine, one point at a
time, timed as whole commands (start-up, Ray's included).

  python -m benchmarks.sweep_engines [--runs=2] [--grid=smoke] [--scale=smoke] [--out=FILE.json]

Runs the engines in turn (local, ray, ray_cache, local, ...), each into a fresh folder,
and writes the median wall seconds of each, the extra seconds per point on Ray and the
machine to --out (default benchmarks/results/sweep_engines_cpu.json). Each ray run starts
its own Ray and asks for all CPUs per point, so both engines run one point at a time.
`ray_cache` is Ray with JAX_COMPILATION_CACHE_DIR set to a fresh folder for the run, so
its later points reuse the programs its first ones compiled.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from benchmarks.common import report
from jaxderain.study import grids

_RUNS = flags.DEFINE_integer('runs', 2, 'Timed runs of each engine.', lower_bound=1)
_GRID = flags.DEFINE_string('grid', 'smoke', 'Named grid.')
_SCALE = flags.DEFINE_string('scale', 'smoke', 'Scale of every point.')
_OUT = flags.DEFINE_string('out', 'benchmarks/results/sweep_engines_cpu.json', 'JSON output.')

RAY_FLAGS = ['--engine=ray', f'--cpus_per_point={os.cpu_count()}']
ENGINE_FLAGS = {'local': [], 'ray': RAY_FLAGS, 'ray_cache': RAY_FLAGS}


def run_once(engine: str) -> float:
  """Wall seconds of one `study run` of the grid with `engine`, into a fresh folder."""
  with tempfile.TemporaryDirectory() as out:
    env = {k: v for k, v in os.environ.items() if k != 'JAX_COMPILATION_CACHE_DIR'}
    if engine == 'ray_cache':
      env['JAX_COMPILATION_CACHE_DIR'] = os.path.join(out, 'xla_cache')
    start = time.perf_counter()
    subprocess.run([sys.executable, '-m', 'jaxderain.study', 'run', f'--grid={_GRID.value}',
                    f'--scale={_SCALE.value}', f'--out={out}', *ENGINE_FLAGS[engine]],
                   check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main(argv):
  del argv
  seconds = {engine: [] for engine in ENGINE_FLAGS}
  for _ in range(_RUNS.value):
    for engine in ENGINE_FLAGS:
      seconds[engine].append(run_once(engine))
  points = len(grids.grid_points(_GRID.value, _SCALE.value))
  medians = {engine: statistics.median(times) for engine, times in seconds.items()}
  report([{'grid': _GRID.value, 'scale': _SCALE.value, 'points': points,
           **{f'{engine}_wall_s': times for engine, times in seconds.items()},
           **{f'{engine}_median_s': median for engine, median in medians.items()},
           **{f'{engine}_extra_s_per_point': (medians[engine] - medians['local']) / points
              for engine in ENGINE_FLAGS if engine != 'local'}}],
         _OUT.value)


if __name__ == '__main__':
  app.run(main)
