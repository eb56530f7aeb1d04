"""Rain synthesis throughput at 128x128, batch 16, and its share of one ResNet train step.

  python -m benchmarks.rain [--repeats=50] [--out=benchmarks/results/rain.json]

The train step is the paper-scale ResNet step (64 ch x 16 blocks, batch 16, 128x128),
which synthesises this rain inside it; the target is rain <= 5% of the step.
"""

from jaxderain import cpu_flags  # pylint: disable=g-import-not-at-top

cpu_flags.apply_fast_cpu_flag()

import statistics  # pylint: disable=g-import-not-at-top
import time

import jax
from absl import app, flags

from jaxderain import rain

from benchmarks.common import report, time_steps  # pylint: disable=g-import-not-at-top
from jaxderain.configs import grid  # pylint: disable=g-import-not-at-top

_REPEATS = flags.DEFINE_integer('repeats', 50, 'Timed rain batches per range.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Timed train steps for the share.')
_OUT = flags.DEFINE_string('out', 'benchmarks/results/rain.json', 'JSON output.')


def time_rain(rain_range, batch: int, size: int, repeats: int) -> float:
  synthesize = jax.jit(lambda key: rain.synthesize(key, batch, size, size, rain_range))
  synthesize(jax.random.key(0)).block_until_ready()
  times = []
  for i in range(repeats):
    start = time.perf_counter()
    synthesize(jax.random.key(i + 1)).block_until_ready()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
  step = time_steps(grid.get_config('resnet,medium,64,scale=paper'), _STEPS.value)
  results = []
  for name in rain.TRAINING_RANGES:
    seconds = time_rain(name, 16, 128, _REPEATS.value)
    results.append({'benchmark': 'rain', 'range': name, 'batch': 16, 'size': 128,
                    'median_s': seconds, 'layers_per_s': 16 / seconds,
                    'train_step_s': step['median_step_s'],
                    'share_of_step': seconds / step['median_step_s']})
  report(results, _OUT.value)


if __name__ == '__main__':
  app.run(main)
