"""Every architecture: parameters, forward time on a 480x320 image, train-step time.

  python -m benchmarks.models [--archs=resnet,unet,...] [--steps=5] [--out=...json]

Parameters and forward time use the paper-scale model (the `paper` preset of
configs/grid.py); the train step uses the `cpu` preset at the cpu scale (batch 8, 64x64).
"""

from jaxderain import cpu_flags  # pylint: disable=g-import-not-at-top

cpu_flags.apply_fast_cpu_flag()

import statistics  # pylint: disable=g-import-not-at-top
import time

import jax
from absl import app, flags

from benchmarks.common import report, time_steps
from jaxderain import experiment, models
from jaxderain.configs import grid
from jaxderain.eval.evaluate import make_predict

_ARCHS = flags.DEFINE_list('archs', list(grid.ARCHS), 'Architectures.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed train steps (after 2 warm-up steps).')
_FORWARDS = flags.DEFINE_integer('forwards', 3, 'Timed forward passes.')
_OUT = flags.DEFINE_string('out', 'benchmarks/results/models.json', 'JSON output.')


def time_forward(config, repeats: int) -> dict:
  """Median eval forward time of the paper-scale model on one 480x320 image."""
  architecture, graphdef, state, _ = experiment.state_template(config)
  predict = make_predict(graphdef, architecture.image)
  image = jax.random.uniform(jax.random.key(0), (1, 320, 480, 3))
  start = time.perf_counter()
  predict(state.params, state.model_state, image).block_until_ready()
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    predict(state.params, state.model_state, image).block_until_ready()
    times.append(time.perf_counter() - start)
  params = sum(x.size for x in jax.tree.leaves(state.params))
  return {'params': params, 'forward_480x320_s': statistics.median(times),
          'forward_first_s': first}


def main(argv):
  del argv
  results = []
  for arch in _ARCHS.value:
    paper = grid.get_config(f'{arch},medium,64')
    cpu = grid.get_config(f'{arch},medium,64,scale=cpu')
    step = time_steps(cpu, _STEPS.value)
    results.append({'benchmark': 'models', 'arch': arch, 'paper_model': dict(paper.model),
                    **time_forward(paper, _FORWARDS.value), 'cpu_model': dict(cpu.model),
                    'cpu_params': models.num_params(
                        models.create(arch, dict(cpu.model), seed=0)),
                    'cpu_train_step_s': step['median_step_s']})
  report(results, _OUT.value)


if __name__ == '__main__':
  app.run(main)
