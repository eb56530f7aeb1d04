"""What PyTorch and PyWavelets compute for the parity tests, stored so that the tests need
neither (tests/data/references/*.npz, read with `load`).

Regenerate all files, from the repository root, in the repository's environment plus
torch 2.13.0 (the CPU build is enough) and PyWavelets 1.9.0:

  pip install torch==2.13.0 PyWavelets==1.9.0
  python tests/make_references.py            # or name some: ... rcdnet haar

Each file holds the inputs and weights it was computed from and what torch (or pywt)
computed, as named arrays (`save` packs them into one array per dtype and a JSON index),
and `versions` (JSON: torch, PyWavelets, numpy). Inputs and weights are random values
rounded to float16, so they take half the bytes (stored as float16, loaded as float32,
exactly); the computations run in float32 (float64 for SPDNet).

  torch_mirrors  benchmarks/torch_models.py's mirrors of the ResNet, UNet and SwinIR of
                 tests/test_torch_mirrors.py (SMALL, on SHAPE): per architecture the
                 mirror's parameters (torch names and layout), its outputs in both memory
                 formats (and with fused attention for SwinIR), the L1 loss and the
                 parameters after one torch.optim.Adam step, FlopCounterMode's count; a
                 SwinIR mirror with torch's own init (`swinir_torch_init/`) and its outputs.
  rcdnet         the official RCDNet forward (eval mode) in torch functional ops.
  spdnet         the official SPDNet forward in torch functional ops, float64.
  swinir         the official SwinIR forward and some of its layers in torch ops.
  haar           pywt.dwt2 / idwt2 ('haar', mode 'zero') of a 7 x 10 array.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDER = ROOT / 'tests' / 'data' / 'references'
NAMES = ('torch_mirrors', 'rcdnet', 'spdnet', 'swinir', 'haar')


# ------------------------------------------------------------------------ reading


def load(name: str) -> dict[str, np.ndarray]:
  """FOLDER/name.npz as {key: array}; float16 arrays come back as float32 (exactly)."""
  with np.load(FOLDER / f'{name}.npz', allow_pickle=False) as stored:
    data = {dtype: stored[dtype] for dtype in stored.files if dtype not in ('index', 'versions')}
    arrays = {'versions': stored['versions']}
    for key, (dtype, offset, shape) in json.loads(str(stored['index'])).items():
      array = data[dtype][offset:offset + math.prod(shape)].reshape(shape)
      arrays[key] = array.astype(np.float32) if dtype == 'float16' else array
  return arrays


def group(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
  """The entries under 'prefix/', without it: group(a, 'state') -> {'conv.weight': ...}."""
  return {key[len(prefix) + 1:]: value for key, value in arrays.items()
          if key.startswith(prefix + '/')}


def prefixed(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  return {f'{prefix}/{key}': value for key, value in arrays.items()}


def exact16(x) -> np.ndarray:
  """x rounded to float16 values, as float32."""
  return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def save(name: str, arrays: dict[str, np.ndarray]) -> pathlib.Path:
  """Write FOLDER/name.npz: the arrays flattened into one array per dtype (float32 ones
  holding float16 values as float16), `index` (JSON: key -> dtype, offset, shape) and
  `versions` (JSON: the packages that computed them)."""
  versions = {'numpy': np.__version__}
  for package in ('torch', 'PyWavelets'):
    try:
      versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      pass
  index, data = {}, {}
  for key, value in arrays.items():
    if key == 'versions':  # as `load` returns it: written anew
      continue
    value = np.asarray(value)
    if value.dtype == np.float32 and np.array_equal(exact16(value), value):
      value = value.astype(np.float16)
    parts = data.setdefault(value.dtype.name, [])
    index[key] = (value.dtype.name, sum(part.size for part in parts), value.shape)
    parts.append(value.ravel())
  FOLDER.mkdir(parents=True, exist_ok=True)
  path = FOLDER / f'{name}.npz'
  np.savez_compressed(path, index=np.array(json.dumps(index)),
                      versions=np.array(json.dumps(versions, sort_keys=True)),
                      **{dtype: np.concatenate(parts) for dtype, parts in data.items()})
  return path


# ---------------------------------------------------------------- torch mirrors


def random_jax_model(module, options, seed=0):
  """A JAX model of `module(**options)` with random float16-valued weights of about the
  trained scale (kernels He-scaled, norm scales near 1, small biases and bias tables)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top

  model = nnx.eval_shape(lambda: module(**options, rngs=nnx.Rngs(0)))
  rng = np.random.default_rng(seed)
  for path, variable in nnx.iter_graph(model):
    if isinstance(variable, nnx.Param):
      noise = rng.standard_normal(variable.shape, np.float32)
      if path[-1] == 'kernel':  # conv HWIO or linear (in, out): fan_in
        noise *= np.sqrt(2 / np.prod(variable.shape[:-1]))
      elif path[-1] == 'scale':
        noise = 1 + 0.1 * noise
      else:
        noise *= 0.05
      variable.set_value(jnp.asarray(exact16(noise)))
  return model


def torch_mirrors() -> dict[str, np.ndarray]:
  import torch  # pylint: disable=g-import-not-at-top
  from torch.utils.flop_counter import FlopCounterMode  # pylint: disable=g-import-not-at-top

  from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
  import test_torch_mirrors as t  # pylint: disable=g-import-not-at-top

  def to_torch(x, channels_last=True):
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    return x.to(memory_format=torch.channels_last) if channels_last else x.contiguous()

  def to_numpy(x):
    return x.detach().numpy().transpose(0, 2, 3, 1)

  rng = np.random.default_rng(1)
  images, targets = (exact16(rng.random(t.SHAPE)) for _ in range(2))
  arrays = {'images': images, 'targets': targets}
  for arch, (module, options) in t.SMALL.items():
    jax_model = random_jax_model(module, options)
    variants = {'default': {}}
    if arch == 'swinir':
      variants['fused_attention'] = {'fused_attention': True}
    for variant, extra in variants.items():
      torch.manual_seed(0)
      mirror = torch_models.from_jax(torch_models.build(arch, **options, **extra), jax_model)
      if variant == 'default':
        arrays.update(prefixed(f'{arch}/weights', {
            name: p.detach().numpy().copy() for name, p in mirror.named_parameters()}))
      with torch.no_grad():
        contiguous = mirror(to_torch(images, channels_last=False))
        mirror = mirror.to(memory_format=torch.channels_last)
        last = mirror(to_torch(images))
      assert last.stride(1) == 1  # channels_last (a crop of it for the padded models)
      arrays[f'{arch}/outputs/{variant}/contiguous'] = to_numpy(contiguous)
      arrays[f'{arch}/outputs/{variant}/channels_last'] = to_numpy(last)

      # One Adam step (lr LEARNING_RATE, torch's defaults otherwise) on the L1 loss.
      optimizer = torch.optim.Adam(mirror.parameters(), lr=t.LEARNING_RATE)
      loss = (mirror(to_torch(images)) - to_torch(targets)).abs().mean()
      optimizer.zero_grad()
      loss.backward()
      optimizer.step()
      arrays[f'{arch}/adam/{variant}/loss'] = np.array(loss.item())
      arrays.update(prefixed(f'{arch}/adam/{variant}/after', {
          name: p.detach().numpy().copy() for name, p in mirror.named_parameters()}))

    mirror = torch_models.build(arch, **options)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
      mirror(to_torch(images))
    arrays[f'{arch}/flops'] = np.array(counter.get_total_flops(), np.int64)

  # torch -> JAX: a SwinIR mirror with torch's own init, perturbed; its whole state_dict.
  torch.manual_seed(1)
  mirror = torch_models.build('swinir', **t.SMALL['swinir'][1])
  with torch.no_grad():
    for param in mirror.parameters():
      param.copy_((param + 0.05 * torch.randn_like(param)).half().float())
    arrays['swinir_torch_init/outputs'] = to_numpy(mirror(to_torch(images)))
  arrays.update(prefixed('swinir_torch_init/state', {
      key: value.numpy().copy() for key, value in mirror.state_dict().items()}))
  return arrays


# ------------------------------------------------------------------------- RCDNet


def rcdnet_forward(torch, state, rainy, num_stages, num_blocks):
  """The official Mainnet.forward in eval mode in torch functional ops: (b0, b, r) as
  numpy NCHW on the 0-255 scale for numpy NCHW `rainy` on that scale."""
  f = torch.nn.functional
  s = {key: torch.from_numpy(value) for key, value in state.items()}

  def prox(prefix, letter, h):
    for n in range(1, num_blocks + 1):
      p = f'{prefix}.res{letter}{n}.'
      y = h
      for conv, bn in (('0', '1'), ('3', '4')):
        y = f.conv2d(y, s[p + conv + '.weight'], s[p + conv + '.bias'], padding=1)
        y = f.batch_norm(y, s[p + bn + '.running_mean'], s[p + bn + '.running_var'],
                         s[p + bn + '.weight'], s[p + bn + '.bias'], eps=1e-5)
        y = f.relu(y) if conv == '0' else y
      h = f.relu(h + y)
    return f.relu(h - s[prefix + '.tau']) if letter == 'm' else h

  pad = s['weight0'].shape[-1] // 2
  c0, c = s['weight0'] / 10, s['conv'][1] / 10
  o = torch.from_numpy(rainy)
  out = prox('xnet', 'x', torch.cat([o, f.conv2d(o, s['w_z_f'], padding=1)], 1))
  b0, z = out[:, :3], out[:, 3:]
  m = prox('m_stage.0', 'm', f.conv_transpose2d(f.relu(o - b0 - s['tau']), c0, padding=pad))
  r = f.conv2d(m, c, padding=pad)
  out = prox('x_stage.0', 'x', torch.cat([b0 - s['eta2'] / 10 * (b0 - (o - r)), z], 1))
  bs, rs = [out[:, :3]], [r]
  for i in range(num_stages - 1):
    b, z = out[:, :3], out[:, 3:]
    gradient = f.conv_transpose2d(r - (o - b), c, padding=pad)
    m = prox(f'm_stage.{i + 1}', 'm', m - s['eta11'][i] / 10 * gradient)
    r = f.conv2d(m, c, padding=pad)
    b = b - s['eta12'][i] / 10 * (b - (o - r))
    out = prox(f'x_stage.{i + 1}', 'x', torch.cat([b, z], 1))
    bs.append(out[:, :3])
    rs.append(r)
  bs.append(prox('fxnet', 'x', out)[:, :3])
  return [t.numpy() for t in (b0, torch.stack(bs), torch.stack(rs))]


def rcdnet() -> dict[str, np.ndarray]:
  """state/ (official keys), images (NHWC in [0, 1]), and b0, b, r (NCHW, 0-255)."""
  import torch  # pylint: disable=g-import-not-at-top
  import test_models_rcdnet as t  # pylint: disable=g-import-not-at-top

  state = t.official_state_dict(0, **t.SMALL)
  state = {k: exact16(v) if v.dtype == np.float32 else v for k, v in state.items()}
  images = exact16(np.random.default_rng(6).random((2, 15, 21, 3)))
  b0, b, r = rcdnet_forward(torch, state, images.transpose(0, 3, 1, 2) * 255,
                            t.SMALL['num_stages'], t.SMALL['num_blocks'])
  return {**prefixed('state', state), 'images': images, 'b0': b0, 'b': b, 'r': r}


# ------------------------------------------------------------------------- SPDNet


def spdnet_forward(torch, images, n_feats, n_blocks, seed=0):
  """The official SPDNet forward in PyTorch functional ops, on (B, 3, H, W) 0-255 float64
  images. Parameters are drawn as first used (float16 values, as float64), under their
  official state_dict keys. Returns (out3, out2, out1) and the state_dict, numpy."""
  f = torch.nn.functional
  generator = torch.Generator().manual_seed(seed)
  state = {}

  def param(key, *shape):
    if key not in state:
      bound = 1 / math.sqrt(math.prod(shape[1:])) if len(shape) > 1 else 0.1
      state[key] = ((2 * torch.rand(*shape, generator=generator, dtype=torch.float64) - 1)
                    * bound).half().double()
    return state[key]

  def conv(key, x, cout, reflect=False):
    weight, bias = param(f'{key}.weight', cout, x.shape[1], 3, 3), param(f'{key}.bias', cout)
    if reflect:
      return f.conv2d(f.pad(x, (1, 1, 1, 1), mode='reflect'), weight, bias)
    return f.conv2d(x, weight, bias, padding=1)

  def convd(key, x, cout):
    return torch.relu(conv(f'{key}.conv', x, cout, reflect=True))

  def rb(key, x):
    c = x.shape[1]
    res = torch.relu(conv(f'{key}.module_body.2',
                          torch.relu(conv(f'{key}.module_body.0', x, c)), c))
    y = torch.relu(f.linear(res.mean((2, 3)), param(f'{key}.se.fc.0.weight', c, c)))
    y = torch.sigmoid(f.linear(y, param(f'{key}.se.fc.2.weight', c, c)))
    return res * y[:, :, None, None] + x

  def rir(key, x):
    h = x
    for i in range(n_blocks):
      h = rb(f'{key}.module_body.{i}', h)
    return torch.relu(conv(f'{key}.module_body.{n_blocks}', h, x.shape[1]) + x)

  haar = torch.tensor([[[1, 1], [1, 1]], [[1, 1], [-1, -1]], [[1, -1], [1, -1]],
                       [[1, -1], [-1, 1]]], dtype=torch.float64)[:, None] / 2  # ll lh hl hh

  def dwt_pack(x):
    c = x.shape[1]
    x = f.pad(x, (0, x.shape[3] % 2, 0, x.shape[2] % 2))
    ll, lh, hl, hh = (f.conv2d(x, k.expand(c, 1, 2, 2), stride=2, groups=c) for k in haar)
    return torch.cat([lh, hl, hh, ll], 1)

  def unpack_idwt(x):
    b, c4, h, w = x.shape
    bands = x.reshape(b, c4 // 4, 4, h, w).unbind(2)  # ll, lh, hl, hh
    return sum(f.conv_transpose2d(band, k.expand(c4 // 4, 1, 2, 2), stride=2, groups=c4 // 4)
               for band, k in zip(bands, haar))

  def fuse(key, x, y):
    c = x.shape[1]
    up = f.conv_transpose2d(f.pad(x, (1, 1, 1, 1), mode='reflect'),
                            param(f'{key}.up.conv2d.weight', c, c, 3, 3),
                            param(f'{key}.up.conv2d.bias', c), stride=2)
    up = f.interpolate(torch.relu(up), size=y.shape[2:])
    return torch.relu(rb(f'{key}.rb', up + y))

  def prior(key, x, p):
    c = x.shape[1]
    attention = torch.sigmoid(conv(f'{key}.query_conv', x, c) * conv(f'{key}.key_conv', p, c))
    ax, ap = x * attention, p * attention
    xg = conv(f'{key}.gamma1', torch.cat((x, ax), 1), 2)
    pg = conv(f'{key}.gamma2', torch.cat((p, ap), 1), 2)
    return x * xg[:, :1] + ax * xg[:, 1:], p * pg[:, :1] + ap * pg[:, 1:]

  def subnet(key, x, res):
    c = x.shape[1]
    x1 = convd(f'{key}.fuse_res', torch.cat(prior(f'{key}.prior', x, res), 1), c)
    x2 = convd(f'{key}.DWT_2', dwt_pack(x1), c)
    x3 = convd(f'{key}.DWT_3', dwt_pack(x2), c)
    for col in (1, 2, 3):
      x1, x2, x3 = (rir(f'{key}.branch{i}_{col}', h) for i, h in ((1, x1), (2, x2), (3, x3)))
    x2 = fuse(f'{key}.fuse23', unpack_idwt(convd(f'{key}.IDWT_3', x3, 4 * c)), x2)
    return fuse(f'{key}.fuse12', unpack_idwt(convd(f'{key}.IDWT_2', x2, 4 * c)), x1)

  def residue_features(key, x):
    res = (x.max(1, keepdim=True)[0] - x.min(1, keepdim=True)[0]).repeat(1, 3, 1, 1)
    return rir(f'{key}.extra', convd(f'{key}.conv_init2',
                                     convd(f'{key}.conv_init1', res, n_feats // 2), n_feats))

  x = torch.from_numpy(images)
  x_init = convd('conv_init2', convd('conv_init1', x, n_feats // 2), n_feats)
  x1 = subnet('sub1', x_init, residue_features('res_extra1', x))
  out1 = conv('output1', x1, 3)
  x2 = subnet('sub2', convd('ag1', torch.cat((x1, x_init), 1), n_feats),
              residue_features('res_extra2', out1))
  out2 = conv('output2', convd('ag2_en', torch.cat([x2, x1], 1), n_feats), 3)
  x3 = subnet('sub3', convd('ag2', torch.cat((x2, x1, x_init), 1), n_feats),
              residue_features('res_extra3', out2))
  out3 = conv('output3', convd('ag_en', torch.cat([x3, x2, x1], 1), n_feats), 3)
  return [o.numpy() for o in (out3, out2, out1)], {k: v.numpy() for k, v in state.items()}


def spdnet() -> dict[str, np.ndarray]:
  """state/ (float16 values), images (float64 NHWC in [0, 1]) and out3, out2, out1
  (float64 NCHW, 0-255)."""
  import torch  # pylint: disable=g-import-not-at-top
  import test_models_spdnet as t  # pylint: disable=g-import-not-at-top

  images = np.random.default_rng(0).uniform(size=(2, 13, 18, 3))
  outputs, state = spdnet_forward(torch, images.transpose(0, 3, 1, 2) * 255,
                                  t.SMOKE['n_feats'], t.SMOKE['n_resblocks'])
  state = {key: value.astype(np.float32) for key, value in state.items()}  # exactly
  return {**prefixed('state', state), 'images': images,
          **dict(zip(('out3', 'out2', 'out1'), outputs))}


# ------------------------------------------------------------------------- SwinIR


class SwinIRReference:
  """The official SwinIR forward written with torch.nn.functional on a state_dict."""

  def __init__(self, torch, state, config):
    self.torch, self.functional = torch, torch.nn.functional
    self.state = {name: torch.from_numpy(value) for name, value in state.items()}
    self.config = config

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
    from test_models_unet_swinir import official_mask_regions  # pylint: disable=g-import-not-at-top
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


# The SwinIR layers checked one by one: the input each sees (a slice of `images` or
# `features`) and how test_models_unet_swinir names the output.
SWINIR_BLOCK = (1, 1)  # layers[1].residual_group.blocks[1]: shifted by 4, 2 heads
SWINIR_LAYER_INPUTS = {'conv_first': ('images', np.s_[:1, :8, :9]),
                       'norm1': ('features', np.s_[:1, :8]),
                       'qkv': ('features', np.s_[:1, :8]),
                       'attention': ('features', np.s_[:]),
                       'block': ('features', np.s_[:]),
                       'model': ('images', np.s_[:])}


def swinir() -> dict[str, np.ndarray]:
  """state/ (official keys, buffers included), images (2, 37, 41, 3), features
  (2, 16, 24, 16) and the outputs named in SWINIR_LAYER_INPUTS."""
  import torch  # pylint: disable=g-import-not-at-top
  import test_models_unet_swinir as t  # pylint: disable=g-import-not-at-top

  config = t.SMALL['swinir'][1]
  state = t.random_official_state()
  state = {k: exact16(v) if v.dtype == np.float32 else v for k, v in state.items()}
  rng = np.random.default_rng(0)
  inputs = {'images': exact16(rng.uniform(size=(2, 37, 41, 3))),
            'features': exact16(rng.standard_normal((2, 16, 24, 16)))}
  reference = SwinIRReference(torch, state, config)
  size, (height, width) = config['window_size'], inputs['features'].shape[1:3]
  prefix = 'layers.{}.residual_group.blocks.{}.'.format(*SWINIR_BLOCK)
  layers = {
      'conv_first': lambda x: reference.conv(x, 'conv_first'),
      'norm1': lambda x: reference.layer_norm(x, prefix + 'norm1'),
      'qkv': lambda x: reference.linear(x, prefix + 'attn.qkv'),
      'attention': lambda x: reference.reverse(reference.attention(
          reference.partition(x, size), prefix + 'attn.', 2, size,
          reference.mask(height, width, size, size // 2)), size, height, width),
      'block': lambda x: reference.block(x, prefix, 2, size // 2),
      'model': reference}
  arrays = {**prefixed('state', state), **inputs}
  with torch.no_grad():
    for name, (source, part) in SWINIR_LAYER_INPUTS.items():
      arrays[name] = layers[name](torch.from_numpy(inputs[source][part])).numpy()
  return arrays


# --------------------------------------------------------------------------- Haar


def haar() -> dict[str, np.ndarray]:
  """x (7, 10) float64 and pywt's dwt2 bands c_a, c_h, c_v, c_d and idwt2 of them."""
  import pywt  # pylint: disable=g-import-not-at-top

  x = np.random.default_rng(0).normal(size=(7, 10))
  c_a, (c_h, c_v, c_d) = pywt.dwt2(x, 'haar', mode='zero')
  inverse = pywt.idwt2((c_a, (c_h, c_v, c_d)), 'haar', mode='zero')
  return {'x': x, 'c_a': c_a, 'c_h': c_h, 'c_v': c_v, 'c_d': c_d, 'idwt2': inverse}


BUILDERS = {'torch_mirrors': torch_mirrors, 'rcdnet': rcdnet, 'spdnet': spdnet,
            'swinir': swinir, 'haar': haar}


def main(names):
  for name in names or NAMES:
    path = save(name, BUILDERS[name]())
    print(f'{path.relative_to(ROOT)}: {path.stat().st_size / 1024:.0f} KiB')


if __name__ == '__main__':
  sys.path[:0] = [str(ROOT), str(ROOT / 'tests')]  # benchmarks/, the test modules
  unknown = set(sys.argv[1:]) - set(NAMES)
  if unknown:
    sys.exit(f'Unknown reference {sorted(unknown)}: choose from {", ".join(NAMES)}.')
  main(sys.argv[1:])
