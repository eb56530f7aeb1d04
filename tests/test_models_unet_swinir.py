"""The UNet and SwinIR: sizes, parameter counts, gradients, jit, shifted-window masks and
loading official (PyTorch) SwinIR weights, checked against what torch.nn.functional
computed (tests/data/references)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxderain.errors import CheckpointError
from jaxderain.models import swinir, unet
import make_references

SMALL = {
    'unet': (unet.UNet, dict(features=8)),
    'swinir': (swinir.SwinIR, dict(embed_dim=16, depths=(2, 2), num_heads=(2, 2),
                                   window_size=8, mlp_ratio=2.0)),
}


def build(name, key=0, **overrides):
  module, options = SMALL[name]
  return module(**{**options, **overrides}, rngs=nnx.Rngs(params=key))


@pytest.fixture(scope='module')
def small_models():
  """One small model per architecture, built once; tests that change weights work on an
  nnx.clone. Eager init compiles a PRNG kernel per parameter shape, and 'rbg' keys
  compile about 4x faster than the default threefry ones here (6 s instead of 24 s)."""
  return {name: build(name, key=jax.random.key(0, impl='rbg')) for name in SMALL}


def num_params(model):
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def conv_params(cin, cout, size=3):
  return size * size * cin * cout + cout


def unet_params(features, num_scales=4):
  """The formula in unet.py's docstring."""
  widths = [features * 2**scale for scale in range(num_scales)]
  count = (conv_params(3, features) + conv_params(features, features)
           + conv_params(features, 3))
  for scale in range(1, num_scales):
    count += (conv_params(widths[scale - 1], widths[scale])
              + conv_params(widths[scale], widths[scale]))
  for scale in range(num_scales - 1):
    count += (conv_params(widths[scale + 1], widths[scale], size=2)
              + conv_params(2 * widths[scale], widths[scale])
              + conv_params(widths[scale], widths[scale]))
  return count


def official_shapes(embed_dim, depths, num_heads, window_size, mlp_ratio):
  """Parameter name -> shape of the official SwinIR (upsampler '', '1conv', patch_norm)."""
  dim, hidden = embed_dim, int(embed_dim * mlp_ratio)
  shapes = {'conv_first.weight': (dim, 3, 3, 3), 'conv_first.bias': (dim,),
            'patch_embed.norm.weight': (dim,), 'patch_embed.norm.bias': (dim,),
            'norm.weight': (dim,), 'norm.bias': (dim,),
            'conv_after_body.weight': (dim, dim, 3, 3), 'conv_after_body.bias': (dim,),
            'conv_last.weight': (3, dim, 3, 3), 'conv_last.bias': (3,)}
  for i, (depth, heads) in enumerate(zip(depths, num_heads)):
    shapes[f'layers.{i}.conv.weight'] = (dim, dim, 3, 3)
    shapes[f'layers.{i}.conv.bias'] = (dim,)
    for j in range(depth):
      prefix = f'layers.{i}.residual_group.blocks.{j}.'
      shapes.update({
          prefix + 'norm1.weight': (dim,), prefix + 'norm1.bias': (dim,),
          prefix + 'attn.relative_position_bias_table': ((2 * window_size - 1)**2, heads),
          prefix + 'attn.qkv.weight': (3 * dim, dim), prefix + 'attn.qkv.bias': (3 * dim,),
          prefix + 'attn.proj.weight': (dim, dim), prefix + 'attn.proj.bias': (dim,),
          prefix + 'norm2.weight': (dim,), prefix + 'norm2.bias': (dim,),
          prefix + 'mlp.fc1.weight': (hidden, dim), prefix + 'mlp.fc1.bias': (hidden,),
          prefix + 'mlp.fc2.weight': (dim, hidden), prefix + 'mlp.fc2.bias': (dim,)})
  return shapes


def random_official_state(seed=0, **config):
  """Random official-layout weights for SMALL['swinir'] (or `config`), plus the buffers
  the official state_dict also holds (filled with junk: they must be ignored)."""
  config = {**SMALL['swinir'][1], **config}
  rng = np.random.default_rng(seed)
  state = {}
  for name, shape in official_shapes(**config).items():
    noise = rng.standard_normal(shape).astype(np.float32)
    if len(shape) > 1:
      state[name] = noise / math.sqrt(math.prod(shape[1:]))
    elif 'norm' in name and name.endswith('weight'):
      state[name] = 1 + 0.1 * noise
    else:
      state[name] = 0.05 * noise
  tokens = config['window_size']**2
  for i, depth in enumerate(config['depths']):
    for j in range(depth):
      prefix = f'layers.{i}.residual_group.blocks.{j}.'
      state[prefix + 'attn.relative_position_index'] = np.zeros((tokens, tokens), np.int64)
      if j % 2:
        state[prefix + 'attn_mask'] = np.ones((4, tokens, tokens), np.float32)
  return state


def test_unet_parameter_count_follows_the_documented_formula():
  for features, expected in ((64, 7_699_011), (32, 1_926_435)):
    model = nnx.eval_shape(lambda f=features: unet.UNet(f, rngs=nnx.Rngs(params=0)))
    assert num_params(model) == unet_params(features) == expected
  three_scales = nnx.eval_shape(lambda: build('unet', num_scales=3))
  assert num_params(three_scales) == unet_params(8, num_scales=3)


def test_swinir_default_has_the_official_parameter_count():
  model = nnx.eval_shape(lambda: swinir.SwinIR(rngs=nnx.Rngs(params=0)))
  shapes = official_shapes(embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, window_size=8,
                           mlp_ratio=2)
  assert num_params(model) == sum(math.prod(s) for s in shapes.values()) == 11_504_163
  # Without patch_norm and qkv_bias: no patch_embed.norm, no qkv bias in the 36 blocks.
  bare = nnx.eval_shape(lambda: swinir.SwinIR(qkv_bias=False, patch_norm=False,
                                              rngs=nnx.Rngs(params=0)))
  assert num_params(bare) == 11_504_163 - 2 * 180 - 36 * 3 * 180


@pytest.mark.parametrize('name', ['unet', 'swinir'])
def test_any_size_and_a_zero_tail_is_the_identity(name, small_models):
  model = nnx.clone(small_models[name])
  for height, width in ((67, 93), (37, 41)):
    x = jax.random.uniform(jax.random.key(height), (1, height, width, 3))
    assert model(x).shape == (1, height, width, 3)
  tail = model.tail if name == 'unet' else model.conv_last
  tail.kernel[...] = jnp.zeros(tail.kernel.shape)
  tail.bias[...] = jnp.zeros(tail.bias.shape)
  np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(x))


@pytest.mark.parametrize('name', ['unet', 'swinir'])
def test_gradients_reach_every_parameter(name, small_models):
  model = small_models[name]
  rainy = jax.random.uniform(jax.random.key(0), (2, 20, 20, 3))
  clean = jax.random.uniform(jax.random.key(1), (2, 20, 20, 3))
  grads = nnx.jit(nnx.grad(lambda m: jnp.mean(jnp.abs(m(rainy) - clean))))(model)
  leaves = jax.tree.leaves_with_path(nnx.state(grads, nnx.Param))
  assert len(leaves) == len(jax.tree.leaves(nnx.state(model, nnx.Param)))
  zero = [jax.tree_util.keystr(path) for path, g in leaves if not np.any(np.asarray(g))]
  assert not zero, f'zero gradient for {zero}'


@pytest.mark.parametrize('name', ['unet', 'swinir'])
def test_jit_matches_eager(name, small_models):
  model = small_models[name]
  x = jax.random.uniform(jax.random.key(2), (2, 37, 41, 3))
  jitted = nnx.jit(lambda m, images: m(images))(model, x)
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(model(x)), atol=1e-5)


def official_mask_regions(height, width, window_size, shift):
  """The official calculate_mask's region map (slices), before partitioning."""
  regions = np.zeros((height, width), np.int32)
  slices = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
  for i, rows in enumerate(slices):
    for j, cols in enumerate(slices):
      regions[rows, cols] = 3 * i + j
  return regions


def test_shifted_window_mask_structure_on_a_padded_size():
  height, width, size, shift = 40, 48, 8, 4  # e.g. 37 x 41 padded, not the official 128
  mask = np.asarray(swinir.shifted_window_mask(height, width, size, shift))
  rows, cols = height // size, width // size
  assert mask.shape == (rows * cols, size * size, size * size)
  assert set(np.unique(mask)) == {0.0, -100.0}
  np.testing.assert_array_equal(mask, mask.transpose(0, 2, 1))
  assert not np.diagonal(mask, axis1=1, axis2=2).any()
  # Only windows in the last row or column mix tokens that the roll wrapped around.
  windows = mask.reshape(rows, cols, size * size, size * size)
  assert not windows[:-1, :-1].any()
  for window, num_regions in ((windows[-1, 0], 2), (windows[0, -1], 2), (windows[-1, -1], 4)):
    assert np.sum(window == 0) == num_regions * (size**2 // num_regions)**2
  official = official_mask_regions(height, width, size, shift).reshape(
      rows, size, cols, size).transpose(0, 2, 1, 3).reshape(rows * cols, size * size)
  expected = np.where(official[:, None, :] != official[:, :, None], -100.0, 0.0)
  np.testing.assert_array_equal(mask, expected)


def test_relative_position_index_matches_the_offsets():
  size = 8
  index = swinir.relative_position_index(size)
  y, x = np.divmod(np.arange(size * size), size)
  expected = ((y[:, None] - y[None, :] + size - 1) * (2 * size - 1)
              + x[:, None] - x[None, :] + size - 1)
  np.testing.assert_array_equal(index, expected)
  assert index.min() == 0 and index.max() == (2 * size - 1)**2 - 1


def test_convert_rejects_missing_unexpected_and_misshapen_keys(small_models):
  model = small_models['swinir']
  before = np.asarray(model.conv_first.kernel[...])
  state = random_official_state()
  del state['norm.bias']
  state['upsample.0.weight'] = np.zeros(3, np.float32)
  state['conv_last.weight'] = np.zeros((3, 16, 5, 5), np.float32)
  with pytest.raises(CheckpointError, match=r'keys missing: norm.bias; unexpected keys: '
                     r'upsample.0.weight; shape mismatches: conv_last.weight '
                     r'\(3, 16, 5, 5\) instead of \(3, 16, 3, 3\)'):
    swinir.convert_torch_state(state, model)
  np.testing.assert_array_equal(np.asarray(model.conv_first.kernel[...]), before)


def test_converted_weights_match_torch_layers_and_the_whole_model(small_models):
  """Official weights converted, against the official forward and some of its layers run
  by torch functional ops (stored by tests/make_references.py)."""
  reference = make_references.load('swinir')
  model = nnx.clone(small_models['swinir'])
  swinir.convert_torch_state(make_references.group(reference, 'state'), model)
  layer, index = make_references.SWINIR_BLOCK
  block = model.layers[layer].residual_group.blocks[index]
  height, width = reference['features'].shape[1:3]

  def attention(x):
    windows = block.attn(swinir.window_partition(x, 8),
                         swinir.shifted_window_mask(height, width, 8, 4))
    return swinir.window_reverse(windows, 8, height, width)

  layers = {'conv_first': model.conv_first, 'norm1': block.norm1, 'qkv': block.attn.qkv,
            'attention': attention, 'block': block, 'model': model}
  assert layers.keys() == make_references.SWINIR_LAYER_INPUTS.keys()
  for name, (source, part) in make_references.SWINIR_LAYER_INPUTS.items():
    ours = np.asarray(layers[name](jnp.asarray(reference[source][part])))
    np.testing.assert_allclose(ours, reference[name], atol=1e-5, rtol=1e-5, err_msg=name)
