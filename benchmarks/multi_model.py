"""K grid points' train steps: K sequential single-model steps against one vmapped K-model
step (jaxderain/train/multi_model.py), for the ResNet of configs/grid.py.

  python -m benchmarks.multi_model [--scales=cpu,paper] [--models=1,4,8] [--steps=10]
      [--num_patches=256] [--out=FILE.json]

Prints one JSON object per (scale, K): the median seconds of one round of K sequential
steps (each model its own state, one compiled step) and of one vmapped K-model step,
after two warm-up calls, and their ratio (speedup > 1: vmapped is faster). Writes them
all to --out (default benchmarks/results/multi_model_<platform>.json).

Background sets are random uint8 patches (a step's time does not depend on their
content), so this needs only jax, flax, optax, numpy, absl and ml_collections; it
imports nothing that needs clu, orbax, PIL or tensorflow_datasets.
"""

import sys

from jaxderain import cpu_flags  # pylint: disable=g-import-not-at-top

cpu_flags.apply_fast_cpu_flag()

import jax  # pylint: disable=g-import-not-at-top
import numpy as np
from absl import app, flags
from flax import nnx

from benchmarks.common import report, time_calls
from jaxderain import models, rain
from jaxderain.configs import grid
from jaxderain.train import multi_model
from jaxderain.distributed import replicate
from jaxderain.train.step import init_state, make_optimizer, make_train_step

_SCALES = flags.DEFINE_list('scales', ['cpu', 'paper'], 'Scales of configs/grid.py.')
_MODELS = flags.DEFINE_list('models', ['1', '4', '8'], 'Numbers K of models trained.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed calls per (scale, K), after 2 warm-ups.')
_NUM_PATCHES = flags.DEFINE_integer('num_patches', 256, 'Background patches per model.')
_OUT = flags.DEFINE_string('out', '', 'JSON output (default: '
                           'benchmarks/results/multi_model_<platform>.json).')


def fresh_state(config, seed: int):
  """(graphdef, step-0 TrainState, optimizer) of `config`'s model for `seed`, made as
  experiment.state_template makes them."""
  init_key, train_key = jax.random.split(jax.random.PRNGKey(seed))
  model = models.get(config.arch).build(**config.model, rngs=nnx.Rngs(params=init_key))
  tx = make_optimizer(config.learning_rate, config.b1, config.b2, config.total_steps,
                      config.final_learning_rate)
  graphdef, state = init_state(model, tx, train_key)
  return graphdef, state, tx


def compare(config, num_models: int, steps: int, mesh, single_step) -> dict:
  """Timings of `num_models` models of `config`: sequential single steps and one
  vmapped step."""
  parts = [fresh_state(config, seed) for seed in range(num_models)]
  graphdef, _, tx = parts[0]
  rng = np.random.default_rng(0)
  backgrounds = rng.integers(0, 256, (_NUM_PATCHES.value, config.patch_size,
                                      config.patch_size, 3), dtype=np.uint8)

  # Stacked first: the sequential steps donate (delete) the states they are given.
  stacked = [replicate(multi_model.stack_states([state for _, state, _ in parts]), mesh)]
  states = [replicate(state, mesh) for _, state, _ in parts]
  shared_backgrounds = replicate(backgrounds, mesh)

  def sequential_round():
    metrics = []
    for k in range(num_models):
      states[k], step_metrics = single_step(states[k], shared_backgrounds)
      metrics.append(step_metrics)
    jax.block_until_ready(metrics)

  sequential = time_calls(sequential_round, steps)
  del states[:]

  multi_step = multi_model.make_multi_train_step(
      graphdef, models.get(config.arch).loss(config.loss), tx,
      rain.TRAINING_RANGES[config.rain_range], config.batch_size, config.flips, mesh)
  pool = replicate(multi_model.pool_backgrounds([backgrounds] * num_models), mesh)

  def vmapped_step():
    stacked[0], metrics = multi_step(stacked[0], *pool)
    jax.block_until_ready(metrics)

  vmapped = time_calls(vmapped_step, steps)
  return {'models': num_models, 'steps_timed': steps,
          'sequential_round_s': sequential['median_s'],
          'sequential_round_min_s': sequential['min_s'],
          'vmapped_step_s': vmapped['median_s'], 'vmapped_step_min_s': vmapped['min_s'],
          'vmapped_first_call_s': vmapped['first_s'],
          'speedup': sequential['median_s'] / vmapped['median_s']}


def main(argv):
  del argv
  platform = jax.default_backend()
  device = {'platform': platform, 'device': jax.devices()[0].device_kind,
            'device_count': jax.device_count()}
  mesh = jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))
  results = []
  for scale in _SCALES.value:
    config = grid.get_config(f'resnet,medium,{_NUM_PATCHES.value},scale={scale}')
    graphdef, _, tx = fresh_state(config, 0)
    single_step = make_train_step(graphdef, models.get(config.arch).loss(config.loss), tx,
                                  rain.TRAINING_RANGES[config.rain_range],
                                  config.batch_size, config.flips, mesh)
    for num_models in map(int, _MODELS.value):
      record = {'benchmark': 'multi_model', 'arch': config.arch, 'scale': scale,
                'model': dict(config.model), 'batch_size': config.batch_size,
                'patch_size': config.patch_size, 'num_patches': _NUM_PATCHES.value,
                **device}
      try:
        record.update(compare(config, num_models, _STEPS.value, mesh, single_step))
      except Exception as error:  # pylint: disable=broad-except
        # e.g. out of memory: record it and go on.
        record.update({'models': num_models,
                       'error': f'{type(error).__name__}: {str(error).splitlines()[0]}'})
      print(f'# {record}', file=sys.stderr, flush=True)
      results.append(record)
  report(results, _OUT.value or f'benchmarks/results/multi_model_{platform}.json')


if __name__ == '__main__':
  app.run(main)
