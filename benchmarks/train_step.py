"""Median train-step time (after compile) of the ResNet at the paper and cpu scales.

  python -m benchmarks.train_step [--scales=paper,cpu] [--steps=5] [--out=FILE.json]

Prints one JSON object per scale and writes them all to --out
(default benchmarks/results/train_step.json). The XLA CPU flag is applied as launch.py
applies it; set XLA_FLAGS yourself to time another path.
"""

from jaxderain import cpu_flags  # pylint: disable=g-import-not-at-top

cpu_flags.apply_fast_cpu_flag()

from absl import app, flags  # pylint: disable=g-import-not-at-top

from benchmarks.common import report, time_steps
from jaxderain.configs import grid

_SCALES = flags.DEFINE_list('scales', ['paper', 'cpu'], 'Scales of configs/grid.py.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps per scale (after 2 warm-up steps).')
_OUT = flags.DEFINE_string('out', 'benchmarks/results/train_step.json', 'JSON output.')


def main(argv):
  del argv
  results = []
  for scale in _SCALES.value:
    config = grid.get_config(f'resnet,medium,64,scale={scale}')
    results.append({'benchmark': 'train_step', 'arch': 'resnet', 'scale': scale,
                    'model': dict(config.model), 'batch_size': config.batch_size,
                    'patch_size': config.patch_size, **time_steps(config, _STEPS.value)})
  report(results, _OUT.value)


if __name__ == '__main__':
  app.run(main)
