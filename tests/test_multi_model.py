"""K grid points trained by one vmapped step match K single-model runs."""

import json
import logging

import jax
import numpy as np
import pytest

from jaxderain import errors
from jaxderain import experiment
from jaxderain.configs import checks, grid
from jaxderain.study import sweep
from jaxderain.study.grids import Point
from jaxderain.train import checkpoints, multi_model
from jaxderain.distributed import replicate
from jaxderain.train.step import make_train_step, sample_batch

STEPS = 5


def smoke_config(num_patches: int, seed: int, **overrides):
  """A smoke resnet (8 features, 2 blocks, patch 32) with batch 4."""
  config = grid.get_config(f'resnet,medium,{num_patches},scale=smoke,seed={seed}')
  config.batch_size = 4
  for field, value in overrides.items():
    config[field] = value
  return config


def random_backgrounds(count: int, patch_size: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (count, patch_size, patch_size, 3),
                                              dtype=np.uint8)


def train_step_parts(config):
  """(graphdef, step-0 state, loss, tx, rain range) of `config`."""
  architecture, graphdef, state, tx = experiment.state_template(config)
  return graphdef, state, architecture.loss(config.loss), tx, checks.rain_range(config)


def test_sampling_a_share_of_a_pool_equals_sampling_its_own_set():
  pool = jax.numpy.asarray(random_backgrounds(30, 8, seed=0))
  key = jax.random.PRNGKey(3)
  own = sample_batch(key, pool[10:22], 16, flips=True)
  shared = jax.jit(lambda start, count: sample_batch(key, pool, 16, True, start, count))(
      np.int32(10), np.int32(12))
  np.testing.assert_array_equal(np.asarray(shared), np.asarray(own))


def test_vmapped_models_match_separate_runs():
  configs = [smoke_config(n, seed) for n, seed in ((5, 0), (12, 1), (20, 2))]
  sets = [random_backgrounds(c.num_patches, c.patch_size, seed=k)
          for k, c in enumerate(configs)]
  mesh = experiment.device_mesh()

  separate_losses, separate_params = [], []
  for config, backgrounds in zip(configs, sets):
    graphdef, state, loss_fn, tx, rain_range = train_step_parts(config)
    step = make_train_step(graphdef, loss_fn, tx, rain_range, config.batch_size,
                           config.flips, mesh)
    state, backgrounds = replicate(state, mesh), replicate(backgrounds, mesh)
    losses = []
    for _ in range(STEPS):
      state, metrics = step(state, backgrounds)
      losses.append(float(metrics['loss']))
    separate_losses.append(losses)
    separate_params.append(jax.device_get(state.params))

  parts = [train_step_parts(config) for config in configs]
  graphdef, _, loss_fn, tx, rain_range = parts[0]
  multi_step = multi_model.make_multi_train_step(graphdef, loss_fn, tx, rain_range,
                                                 configs[0].batch_size, configs[0].flips,
                                                 mesh)
  stacked = replicate(multi_model.stack_states([p[1] for p in parts]), mesh)
  pool, starts, counts = replicate(multi_model.pool_backgrounds(sets), mesh)
  together_losses = []
  for _ in range(STEPS):
    stacked, metrics = multi_step(stacked, pool, starts, counts)
    assert metrics['loss'].shape == (len(configs),)
    together_losses.append(np.asarray(metrics['loss']))

  np.testing.assert_allclose(np.stack(together_losses, axis=1), separate_losses, rtol=1e-5)
  assert len({losses[-1] for losses in separate_losses}) == len(configs)  # distinct runs
  for k, params in enumerate(separate_params):
    state = multi_model.unstack_state(stacked, k)
    assert int(state.step) == STEPS
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params)):
      np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=2e-5)


def test_configs_that_differ_in_shape_cannot_train_together(tmp_path):
  configs = [smoke_config(8, 0), smoke_config(16, 1, batch_size=8)]
  with pytest.raises(errors.ConfigError, match='config.batch_size differs'):
    experiment.train_together(configs, [str(tmp_path / 'a'), str(tmp_path / 'b')])


def test_train_together_writes_each_point_in_the_normal_layout(tmp_path):
  configs = [smoke_config(n, seed, total_steps=4, log_every=2, checkpoint_every=2)
             for n, seed in ((8, 0), (16, 1))]
  workdirs = [tmp_path / 'a', tmp_path / 'b']
  trained = experiment.train_together(configs, [str(w) for w in workdirs])
  for config, workdir, (state, history) in zip(configs, workdirs, trained):
    assert [h['step'] for h in history] == [2, 4]
    assert json.loads((workdir / 'config.json').read_text())['seed'] == config.seed
    assert list(workdir.glob('events.out.tfevents.*'))
    manager = checkpoints.checkpoint_manager(workdir)
    assert sorted(manager.all_steps()) == [2, 4]
    resumed, more = experiment.train(config, str(workdir))  # launch.py's train: done
    assert more == [] and int(resumed.step) == 4
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(resumed.params)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert trained[0][1][-1]['loss'] != trained[1][1][-1]['loss']


def test_sweep_groups_fresh_compatible_points(tmp_path):
  names = ('resnet,medium,8', 'resnet,medium,16,seed=1', 'unet,medium,8',
           'resnet,medium,32', 'resnet,large,8', 'resnet,medium,64')
  points = [Point(f'{name},scale=smoke') for name in names]
  started = checkpoints.checkpoint_manager(tmp_path / 'points' / points[5].name)
  checkpoints.save(started, 1, {'x': np.zeros(2)})
  checkpoints.wait(started)
  assert sweep.groups(points, tmp_path, together=1) == [[p] for p in points]
  assert sweep.groups(points, tmp_path, together=2) == [
      [points[0], points[1]], [points[3]], [points[2]], [points[4]], [points[5]]]


def test_sweep_together_trains_and_evaluates_each_point(tmp_path, caplog):
  points = [Point(f'resnet,medium,{n},scale=smoke,seed={n}', (('total_steps', 4),))
            for n in (8, 16)]
  with caplog.at_level(logging.INFO):
    summary = sweep.run(points, tmp_path, together=2)
  assert summary == {'done': 2, 'skipped': 0, 'failed': {}}
  assert 'Training 2 grid points together' in caplog.text
  for point in points:
    workdir = tmp_path / 'points' / point.name
    assert json.loads((workdir / 'done.json').read_text())['seconds'] > 0
    assert json.loads((workdir / 'eval' / 'natural_unseen.json').read_text())['step'] == 4
