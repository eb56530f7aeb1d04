"""The UNet and SwinIR: sizes, parameter counts, gradients, jit, shifted-window masks and
loading official (PyTorch) SwinIR weights, checked against torch.nn.functional."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxderain.errors import CheckpointError
from jaxderain.models import swinir, unet

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


class TorchReference:
  """The official SwinIR forward written with torch.nn.functional on a state_dict."""

  def __init__(self, torch, state, config):
    self.torch, self.functional = torch, torch.nn.functional
    self.state = {name: torch.from_numpy(value) for name, value in state.items()}
    self.config = {**SMALL['swinir'][1], **config}

  def layer_norm(self, x, prefix):
    return self.functional.layer_norm(x, x.shape[-1:], self.state[prefix + '.weight'],
                                      self.state[prefix + '.bias'], eps=1e-5)

  def linear(self, x, prefix):
    return self.functional.linear(x, self.state[prefix + '.weight'],
                                  self.state[prefix + '.bias'])

  def conv(self, x, prefix):
    """(B, H, W, C) -> (B, H, W, C') via torch's NCHW conv2d."""
    y = self.functional.conv2d(x.permute(0, 3, 1, 2), self.state[prefix + '.weight'],
                               self.state[prefix + '.bias'], padding=1)
    return y.permute(0, 2, 3, 1)

  def partition(self, x, size):
    batch, height, width, channels = x.shape
    x = x.view(batch, height // size, size, width // size, size, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, size * size, channels)

  def reverse(self, windows, size, height, width):
    x = windows.view(-1, height // size, width // size, size, size, windows.shape[-1])
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, windows.shape[-1])

  def mask(self, height, width, size, shift):
    regions = self.partition(self.torch.from_numpy(
        official_mask_regions(height, width, size, shift)).float()[None, :, :, None], size)
    difference = regions[..., 0].unsqueeze(1) - regions[..., 0].unsqueeze(2)
    return difference.masked_fill(difference != 0, -100.0)

  def attention(self, x, prefix, heads, size, mask):
    torch = self.torch
    windows, tokens, dim = x.shape
    qkv = self.linear(x, prefix + 'qkv').reshape(windows, tokens, 3, heads, dim // heads)
    query, key, value = qkv.permute(2, 0, 3, 1, 4)
    logits = (query * (dim // heads)**-0.5) @ key.transpose(-2, -1)
    coords = torch.flatten(torch.stack(torch.meshgrid(
        torch.arange(size), torch.arange(size), indexing='ij')), 1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + size - 1
    index = relative[..., 0] * (2 * size - 1) + relative[..., 1]
    bias = self.state[prefix + 'relative_position_bias_table'][index.view(-1)]
    logits = logits + bias.view(tokens, tokens, -1).permute(2, 0, 1).unsqueeze(0)
    if mask is not None:
      logits = (logits.view(-1, mask.shape[0], heads, tokens, tokens)
                + mask.unsqueeze(1).unsqueeze(0)).view(-1, heads, tokens, tokens)
    out = (logits.softmax(-1) @ value).transpose(1, 2).reshape(windows, tokens, dim)
    return self.linear(out, prefix + 'proj')

  def block(self, x, prefix, heads, shift):
    """One Swin block on (B, H, W, C)."""
    size, (height, width) = self.config['window_size'], x.shape[1:3]
    h = self.layer_norm(x, prefix + 'norm1')
    if shift:
      h = self.torch.roll(h, (-shift, -shift), (1, 2))
    mask = self.mask(height, width, size, shift) if shift else None
    h = self.reverse(self.attention(self.partition(h, size), prefix + 'attn.', heads, size,
                                    mask), size, height, width)
    if shift:
      h = self.torch.roll(h, (shift, shift), (1, 2))
    x = x + h
    hidden = self.functional.gelu(self.linear(self.layer_norm(x, prefix + 'norm2'),
                                              prefix + 'mlp.fc1'))
    return x + self.linear(hidden, prefix + 'mlp.fc2')

  def __call__(self, images):
    """(B, H, W, 3) -> (B, H, W, 3), padding as the official check_image_size."""
    size, (height, width) = self.config['window_size'], images.shape[1:3]
    padded = self.functional.pad(images.permute(0, 3, 1, 2),
                                 (0, -width % size, 0, -height % size), 'reflect')
    padded = padded.permute(0, 2, 3, 1)
    shallow = self.conv(padded - self.torch.tensor([0.4488, 0.4371, 0.4040]), 'conv_first')
    h = self.layer_norm(shallow, 'patch_embed.norm')
    for i, (depth, heads) in enumerate(zip(self.config['depths'],
                                           self.config['num_heads'])):
      skip = h
      for j in range(depth):
        h = self.block(h, f'layers.{i}.residual_group.blocks.{j}.', heads,
                       0 if j % 2 == 0 else size // 2)
      h = skip + self.conv(h, f'layers.{i}.conv')
    deep = self.conv(self.layer_norm(h, 'norm'), 'conv_after_body') + shallow
    return (padded + self.conv(deep, 'conv_last'))[:, :height, :width]


def test_converted_weights_match_torch_layers_and_the_whole_model(small_models):
  torch = pytest.importorskip('torch')
  state = random_official_state()
  model = nnx.clone(small_models['swinir'])
  swinir.convert_torch_state(state, model)
  reference = TorchReference(torch, state, {})
  rng = np.random.default_rng(0)

  def check(flax_fn, torch_fn, x):
    with torch.no_grad():
      expected = torch_fn(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(flax_fn(jnp.asarray(x))), expected, atol=1e-5,
                               rtol=1e-5)

  images = rng.uniform(size=(2, 37, 41, 3)).astype(np.float32)
  check(model.conv_first, lambda x: reference.conv(x, 'conv_first'), images)
  features = rng.standard_normal((2, 24, 40, 16)).astype(np.float32)
  prefix = 'layers.1.residual_group.blocks.1.'
  block = model.layers[1].residual_group.blocks[1]
  check(block.norm1, lambda x: reference.layer_norm(x, prefix + 'norm1'), features)
  check(block.attn.qkv, lambda x: reference.linear(x, prefix + 'attn.qkv'), features)
  windows = swinir.window_partition(features, 8)
  check(lambda x: block.attn(x, swinir.shifted_window_mask(24, 40, 8, 4)),
        lambda x: reference.attention(x, prefix + 'attn.', 2, 8,
                                      reference.mask(24, 40, 8, 4)), np.asarray(windows))
  check(block, lambda x: reference.block(x, prefix, 2, 4), features)
  check(model, reference, images)
