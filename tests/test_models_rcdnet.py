"""RCDNet: shapes, parameter count, gradients, jit, BatchNorm modes, losses, conversion."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxderain import models
from jaxderain.errors import CheckpointError
from jaxderain.models import rcdnet
import make_references

SMALL = dict(num_stages=3, num_kernels=4, num_z=4, num_blocks=1, kernel_size=5)


def small_model(seed=0, **overrides):
  return rcdnet.RCDNet(**{**SMALL, **overrides}, rngs=nnx.Rngs(seed))


def images(seed, shape=(2, 13, 19, 3)):
  return jax.random.uniform(jax.random.key(seed), shape)


def test_init_kernel_is_the_official_data():
  kernel = rcdnet.init_kernel()
  assert kernel.shape == (3, 32, 9, 9) and kernel.dtype == np.float32
  assert 0.0 <= kernel.min() and kernel.max() < 0.5
  model = small_model(num_kernels=6, kernel_size=9)
  expected = kernel[:, :6].transpose(2, 3, 1, 0)
  np.testing.assert_array_equal(np.asarray(model.rain_kernel[...]), expected)
  np.testing.assert_array_equal(np.asarray(model.rain_kernel0[...]), expected)
  cropped = small_model(num_kernels=6, kernel_size=5).rain_kernel[...]
  np.testing.assert_array_equal(np.asarray(cropped), expected[2:7, 2:7])


def test_output_shapes_on_odd_sizes():
  outputs = small_model()(images(0, (2, 67, 93, 3)))
  assert outputs.b0.shape == (2, 67, 93, 3)
  assert outputs.b.shape == (4, 2, 67, 93, 3)  # stages 1..3, then the final Xnet
  assert outputs.r.shape == (3, 2, 67, 93, 3)
  np.testing.assert_array_equal(rcdnet.final_image(outputs), outputs.b[-1])


def test_default_parameter_count_is_the_official_used_one():
  # Official parameters that get a gradient (measured), less the 15 kernel slices
  # conv[i != 1] among them that only ever get zeros.
  official_with_gradient = 3_091_826
  unused_kernel_slices = 15 * 3 * 32 * 9 * 9
  model = rcdnet.RCDNet(rngs=nnx.Rngs(0))
  assert models.num_params(model) == official_with_gradient - unused_kernel_slices
  assert models.num_params(model) == 2_975_186


def test_gradients_reach_every_parameter():
  model = small_model(num_stages=2)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  clean = images(1)
  rainy = jnp.clip(clean + 0.3 * images(2), 0.0, 1.0)

  def loss(params):
    return rcdnet.published_loss(nnx.merge(graphdef, params, rest, copy=True)(rainy),
                                 rainy, clean)

  grads = jax.jit(jax.grad(loss))(params)
  for path, grad in jax.tree_util.tree_leaves_with_path(grads):
    assert float(jnp.abs(grad).max()) > 0, jax.tree_util.keystr(path)


def test_jit_equals_eager_in_train_mode():
  x = images(3)
  eager_model, jit_model = small_model(), small_model()
  eager = eager_model(x)
  jitted = nnx.jit(lambda model, x: model(x))(jit_model, x)
  for a, b in zip(eager, jitted):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(nnx.state(eager_model, nnx.BatchStat)),
                  jax.tree.leaves(nnx.state(jit_model, nnx.BatchStat))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def test_batch_norm_statistics_update_in_train_mode_and_are_used_in_eval_mode():
  model = small_model()
  before = jax.tree.leaves(nnx.state(model, nnx.BatchStat))
  x = images(4, (3, 13, 19, 3))
  train_alone, train_batch = model(x[:1]).b[-1], model(x).b[-1][:1]
  after = jax.tree.leaves(nnx.state(model, nnx.BatchStat))
  assert all(not np.allclose(a, b) for a, b in zip(before, after))
  assert not np.allclose(train_alone, train_batch)  # batch statistics in train mode

  model.eval()
  eval_alone, eval_batch = model(x[:1]).b[-1], model(x).b[-1][:1]
  np.testing.assert_allclose(eval_alone, eval_batch, rtol=1e-5, atol=1e-6)
  for a, b in zip(after, jax.tree.leaves(nnx.state(model, nnx.BatchStat))):
    np.testing.assert_array_equal(a, b)


def test_losses_weigh_stages_as_the_official_trainer():
  clean = images(5)
  rainy = jnp.clip(clean + 0.2, 0.0, 1.0)
  rain = rainy - clean
  steps = jnp.arange(1.0, 5.0)[:, None, None, None, None] / 255.0  # 1..4 grey levels off
  outputs = rcdnet.RCDNetOutputs(b0=clean + 0.5 / 255.0, b=clean + steps,
                                 r=rain + steps[:3])
  # 0.1 b0 + 0.1 sum_{j<3} (b_j + r_j) + b_final + 0.9 r_last, MSE in grey levels^2.
  expected = 0.1 * 0.25 + 0.1 * (1 + 4 + 9) * 2 + 16 + 0.9 * 9
  np.testing.assert_allclose(rcdnet.published_loss(outputs, rainy, clean), expected,
                             rtol=1e-4)
  np.testing.assert_allclose(rcdnet.l1_loss(outputs, rainy, clean), 4 / 255.0, rtol=1e-4)


def official_state_dict(seed, num_stages, num_kernels, num_z, num_blocks, kernel_size):
  """A random state_dict with the official Mainnet's keys and shapes, unused ones too."""
  rng = np.random.default_rng(seed)
  uniform = lambda low, high, *shape: rng.uniform(low, high, shape).astype(np.float32)
  k = kernel_size
  state = {'eta1': uniform(0.5, 1.5, 1), 'eta2': uniform(3, 7, 1),
           'eta11': uniform(0.5, 1.5, num_stages - 1, 1),
           'eta12': uniform(3, 7, num_stages - 1, 1),
           'weight0': uniform(0, 0.5, 3, num_kernels, k, k),
           'conv': uniform(0, 0.5, num_stages - 1, 3, num_kernels, k, k),
           'w_z_f': uniform(0, 0.2, num_z, 3, 3, 3), 'tau': uniform(0.5, 1.5, 1)}

  def prox(prefix, letter, channels):
    bound = 1 / np.sqrt(9 * channels)
    for n in range(1, num_blocks + 1):
      for conv, bn in (('0', '1'), ('3', '4')):
        name = f'{prefix}.res{letter}{n}.'
        state[name + conv + '.weight'] = uniform(-bound, bound, channels, channels, 3, 3)
        state[name + conv + '.bias'] = uniform(-bound, bound, channels)
        state[name + bn + '.weight'] = uniform(0.8, 1.2, channels)
        state[name + bn + '.bias'] = uniform(-0.1, 0.1, channels)
        state[name + bn + '.running_mean'] = uniform(-5, 5, channels)
        state[name + bn + '.running_var'] = uniform(10, 100, channels)
        state[name + bn + '.num_batches_tracked'] = np.array(7)
    if letter == 'm':
      state[prefix + '.tau'] = uniform(0.2, 0.8, 1, channels, 1, 1)

  for prefix in ['xnet', 'fxnet'] + [f'x_stage.{i}' for i in range(num_stages)]:
    prox(prefix, 'x', num_z + 3)
  for prefix in ['mnet'] + [f'm_stage.{i}' for i in range(num_stages)]:
    prox(prefix, 'm', num_kernels)
  return state


def test_conversion_matches_torch_functional_reference():
  """The converted model in eval mode against the official Mainnet.forward run by torch
  functional ops (stored by tests/make_references.py: the state_dict, the images and
  (b0, b, r), NCHW on the 0-255 scale)."""
  reference = make_references.load('rcdnet')
  model = small_model(seed=1)
  rcdnet.convert_torch_state(make_references.group(reference, 'state'), model)
  model.eval()
  ours = model(jnp.asarray(reference['images']))
  for name, a in zip(('b0', 'b', 'r'), ours):
    np.testing.assert_allclose(np.moveaxis(np.asarray(a) * 255, -1, -3), reference[name],
                               rtol=1e-5, atol=1e-3, err_msg=name)


def test_conversion_names_missing_unexpected_and_mismatched_keys():
  state = official_state_dict(0, **SMALL)
  del state['weight0']
  state['extra.weight'] = np.zeros(3, np.float32)
  state['eta11'] = np.zeros((5, 1), np.float32)
  model = small_model()
  before = np.asarray(model.eta_m[...])
  with pytest.raises(CheckpointError) as error:
    rcdnet.convert_torch_state(state, model)
  message = str(error.value)
  assert 'keys missing: weight0' in message
  assert 'unexpected keys: extra.weight' in message
  assert 'shape mismatches: eta11 (5, 1) instead of (2, 1)' in message
  np.testing.assert_array_equal(np.asarray(model.eta_m[...]), before)
  with pytest.raises(CheckpointError, match='stage >= 3'):
    rcdnet.convert_torch_state(state, small_model(num_stages=2))


def test_every_array_has_its_own_buffer():
  """The train step donates its state: no two arrays may share memory."""
  leaves = jax.tree.leaves(nnx.state(small_model()))
  assert len({leaf.unsafe_buffer_pointer() for leaf in leaves}) == len(leaves)
