"""SPDNet (Yi et al., ICCV 2021): structure-preserving deraining with residue channel prior.

A port of the official PyTorch model (Joyies/SPDNet, src/model/spdnet.py, `Rainnet`),
layer for layer, so that its state_dict converts unchanged (`convert_torch_state`).

Three stages refine the image; each guides a wavelet subnet by features of the residue
channel (max_c - min_c of RGB) of the input, then of the previous stage's estimate. A
subnet works at three scales (two Haar DWT levels, each followed by a conv 4C -> C), runs
three columns of RIR blocks per scale and merges back through inverse DWTs and `Fuse`.
Quirks of the official code, kept so that converted weights give the same outputs:
  * DWT bands are packed band-major as (LH, HL, HH, LL) but the inverse DWT unpacks the
    conv output channel-major as channel 4c + (LL, LH, HL, HH)[b] (`_pack`, `_unpack`).
  * `Upsample` (inside `Fuse`) reflection-pads, applies a stride-2 transposed conv to the
    already full-resolution inverse DWT output (2H + 5 rows) and nearest-resizes it back
    to the other branch's size with PyTorch's legacy index rule (`_nearest_resize`).
  * Odd sizes need no padding: the DWT zero-pads one row/column (pywt mode 'zero') and
    `Fuse` resizes to the finer branch, so any H, W >= 5 works (the coarsest level must
    have 2 pixels for the reflection padding; PyTorch fails below that too).
  * `Prior_Sp` hard-codes 32 channels, so the official model runs only with n_feats=32;
    here it takes n_feats (identical at 32).
Parameters the official forward never uses are not ported: every InstanceNorm in `convd`,
the stride-2 down convs, the transposed convs `branch*_u` and `fuse*.conv`. At n_feats=32,
n_resblocks=3 that leaves 2,981,525 of its 3,318,741 parameters. Initialisation follows
PyTorch's defaults (kernels and biases U(+-1/sqrt(fan_in)), models/layers.py).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxderain.models import torch_layout
from jaxderain.models.layers import torch_conv, torch_uniform

# The official model works on 0-255 images (rgb_range 255).
RGB_RANGE = 255.0


# Polyphase taps of a 3-tap stride-2 transposed conv: output 2m + p is the sum over the
# taps a of z[m + a] * kernel[k], z the input with one zero in front, for the (a, k) with
# _PHASES[p, a, k] = 1 (even outputs: k = 2 on z[m], k = 0 on z[m + 1]; odd: k = 1).
_PHASES = np.array([[[0, 0, 1], [1, 0, 0]], [[0, 0, 0], [0, 1, 0]]], np.float32)


class ConvTranspose2d(nnx.Module):
  """torch.nn.ConvTranspose2d(cin, cout, 3, stride=2): (B, H, W, cin) -> (B, 2H+1, 2W+1, cout).

  kernel (3, 3, cin, cout) is the torch weight (cin, cout, 3, 3) transposed. Computed as
  one 2x2 conv with the four output phases as channels, then depth-to-space (2.25x fewer
  multiplies than a conv over the zero-dilated input, and faster on CPU).
  """
  torch_kernel_kind = 'conv_transpose'  # its layout in models/torch_layout.py

  def __init__(self, cin, cout, *, rngs, param_dtype):
    # PyTorch takes fan_in from weight dim 1 (cout) for transposed convs.
    init = torch_uniform(9 * cout)
    self.kernel = nnx.Param(init(rngs.params(), (3, 3, cin, cout), param_dtype))
    self.bias = nnx.Param(init(rngs.params(), (cout,), param_dtype))

  def __call__(self, x):
    batch, h, w, _ = x.shape
    cin, cout = self.kernel.shape[2:]
    phases = jnp.asarray(_PHASES, self.kernel.dtype)
    kernel = jnp.einsum('pak,qbl,klio->abipqo', phases, phases, self.kernel[...])
    z = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = jax.lax.conv_general_dilated(z, kernel.reshape(2, 2, cin, 4 * cout), (1, 1),
                                     'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    y = y.reshape(batch, h + 1, w + 1, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(batch, 2 * h + 2, 2 * w + 2, cout)[:, :2 * h + 1, :2 * w + 1]
    return y + self.bias[...]


def _reflect_pad(x):
  return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='reflect')


def _cat(*xs):
  return jnp.concatenate(xs, axis=-1)


def _residue(x):
  """Residue channel max_c - min_c of (B, H, W, 3) images, repeated to 3 channels."""
  res = jnp.max(x, axis=-1, keepdims=True) - jnp.min(x, axis=-1, keepdims=True)
  return jnp.tile(res, (1, 1, 1, 3))


def haar_dwt(x):
  """One level of the 2D Haar DWT, pywt.dwt2(x, 'haar', mode='zero') per channel.

  Args:
    x: (B, H, W, C); an odd H or W gets one zero row/column at the end.
  Returns:
    (ll, lh, hl, hh), each (B, ceil(H/2), ceil(W/2), C): pywt's cA, cH (lowpass along W,
    highpass along H), cV and cD; pytorch_wavelets' yl and yh[0][:, :, 0..2].
  """
  x = jnp.pad(x, ((0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2), (0, 0)))
  a, b = x[:, 0::2, 0::2], x[:, 0::2, 1::2]
  c, d = x[:, 1::2, 0::2], x[:, 1::2, 1::2]
  return ((a + b + c + d) / 2, (a + b - c - d) / 2, (a - b + c - d) / 2,
          (a - b - c + d) / 2)


def haar_idwt(ll, lh, hl, hh):
  """The inverse of `haar_dwt`: four (B, h, w, C) bands -> (B, 2h, 2w, C)."""
  a = (ll + lh + hl + hh) / 2
  b = (ll + lh - hl - hh) / 2
  c = (ll - lh + hl - hh) / 2
  d = (ll - lh - hl + hh) / 2
  y = jnp.stack([jnp.stack([a, b], axis=3), jnp.stack([c, d], axis=3)], axis=2)
  batch, h, _, w, _, channels = y.shape
  return y.reshape(batch, 2 * h, 2 * w, channels)


def _pack(ll, lh, hl, hh):
  """Official `_transformer`: channels [LH | HL | HH | LL], band-major (B, h, w, 4C)."""
  return _cat(lh, hl, hh, ll)


def _unpack(x):
  """Official `_Itransformer`: channel 4c + b of (B, h, w, 4C) is band b of channel c,
  bands (LL, LH, HL, HH); not the inverse of `_pack`."""
  y = x.reshape(*x.shape[:-1], x.shape[-1] // 4, 4)
  return y[..., 0], y[..., 1], y[..., 2], y[..., 3]


def _nearest_indices(n_in: int, n_out: int) -> np.ndarray:
  """Source indices of F.interpolate(mode='nearest'): floor(i * n_in / n_out) in float32."""
  if n_out == n_in:
    return np.arange(n_out)
  if n_out == 2 * n_in:
    return np.arange(n_out) // 2
  scale = np.float32(n_in) / np.float32(n_out)
  index = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
  return np.minimum(index, n_in - 1)


def _nearest_resize(x, size):
  """(B, H, W, C) -> (B, size[0], size[1], C) as PyTorch's legacy 'nearest'."""
  x = jnp.take(x, _nearest_indices(x.shape[1], size[0]), axis=1)
  return jnp.take(x, _nearest_indices(x.shape[2], size[1]), axis=2)


class ConvD(nnx.Module):
  """Official `convd` (stride 1): reflection pad 1, conv3x3, ReLU (its InstanceNorm is unused)."""

  def __init__(self, cin, cout, *, rngs, param_dtype):
    self.conv = torch_conv(cin, cout, padding='VALID', rngs=rngs, param_dtype=param_dtype)

  def __call__(self, x):
    return jax.nn.relu(self.conv(_reflect_pad(x)))


class SELayer(nnx.Module):
  """Squeeze-excitation, reduction 1: x * sigmoid(W2 relu(W1 mean_hw(x))), no biases."""

  def __init__(self, features, *, rngs, param_dtype):
    init = torch_uniform(features)
    self.fc = nnx.Sequential(
        nnx.Linear(features, features, use_bias=False, kernel_init=init,
                   param_dtype=param_dtype, rngs=rngs),
        jax.nn.relu,
        nnx.Linear(features, features, use_bias=False, kernel_init=init,
                   param_dtype=param_dtype, rngs=rngs),
        jax.nn.sigmoid)

  def __call__(self, x):
    return x * self.fc(jnp.mean(x, axis=(1, 2)))[:, None, None, :]


class RB(nnx.Module):
  """Residual block: x + SE(relu(conv(relu(conv(x)))))."""

  def __init__(self, features, *, rngs, param_dtype):
    kw = dict(rngs=rngs, param_dtype=param_dtype)
    self.module_body = nnx.Sequential(torch_conv(features, features, **kw), jax.nn.relu,
                                      torch_conv(features, features, **kw), jax.nn.relu)
    self.se = SELayer(features, **kw)

  def __call__(self, x):
    return x + self.se(self.module_body(x))


class RIR(nnx.Module):
  """Residual in residual: relu(x + conv(RB(...RB(x)))) with n_blocks RBs."""

  def __init__(self, features, n_blocks, *, rngs, param_dtype):
    kw = dict(rngs=rngs, param_dtype=param_dtype)
    self.module_body = nnx.Sequential(*[RB(features, **kw) for _ in range(n_blocks)],
                                      torch_conv(features, features, **kw))

  def __call__(self, x):
    return jax.nn.relu(x + self.module_body(x))


class ResCh(nnx.Module):
  """Official `res_ch`: residue channel features, convd 3->C/2->C then an RIR."""

  def __init__(self, features, n_blocks, *, rngs, param_dtype):
    kw = dict(rngs=rngs, param_dtype=param_dtype)
    self.conv_init1 = ConvD(3, features // 2, **kw)
    self.conv_init2 = ConvD(features // 2, features, **kw)
    self.extra = RIR(features, n_blocks, **kw)

  def __call__(self, x):
    return self.extra(self.conv_init2(self.conv_init1(x)))


class Upsample(nnx.Module):
  """Reflection pad 1, stride-2 transposed conv, ReLU, nearest resize to `size`."""

  def __init__(self, features, *, rngs, param_dtype):
    self.conv2d = ConvTranspose2d(features, features, rngs=rngs, param_dtype=param_dtype)

  def __call__(self, x, size):
    return _nearest_resize(jax.nn.relu(self.conv2d(_reflect_pad(x))), size)


class Fuse(nnx.Module):
  """relu(RB(Upsample(x, size of y) + y)): merges a coarser branch x into y."""

  def __init__(self, features, *, rngs, param_dtype):
    kw = dict(rngs=rngs, param_dtype=param_dtype)
    self.up = Upsample(features, **kw)
    self.rb = RB(features, **kw)

  def __call__(self, x, y):
    return jax.nn.relu(self.rb(self.up(x, y.shape[1:3]) + y))


class PriorSp(nnx.Module):
  """Official `Prior_Sp`: mutual sigmoid attention between image and residue features."""

  def __init__(self, features, *, rngs, param_dtype):
    kw = dict(rngs=rngs, param_dtype=param_dtype)
    self.query_conv = torch_conv(features, features, **kw)
    self.key_conv = torch_conv(features, features, **kw)
    self.gamma1 = torch_conv(2 * features, 2, **kw)
    self.gamma2 = torch_conv(2 * features, 2, **kw)

  def __call__(self, x, prior):
    attention = jax.nn.sigmoid(self.query_conv(x) * self.key_conv(prior))
    attention_x = x * attention
    attention_p = prior * attention
    x_gamma = self.gamma1(_cat(x, attention_x))
    p_gamma = self.gamma2(_cat(prior, attention_p))
    return (x * x_gamma[..., :1] + attention_x * x_gamma[..., 1:],
            prior * p_gamma[..., :1] + attention_p * p_gamma[..., 1:])


class Subnet(nnx.Module):
  """Official `subnet`: residue-guided fusion, then three scales of three RIR columns."""

  # pylint: disable=invalid-name  # attribute names are the official state_dict keys
  def __init__(self, features, n_blocks, *, rngs, param_dtype):
    kw = dict(rngs=rngs, param_dtype=param_dtype)
    self.DWT_2 = ConvD(4 * features, features, **kw)
    self.DWT_3 = ConvD(4 * features, features, **kw)
    self.IDWT_2 = ConvD(features, 4 * features, **kw)
    self.IDWT_3 = ConvD(features, 4 * features, **kw)
    self.prior = PriorSp(features, **kw)
    self.fuse_res = ConvD(2 * features, features, **kw)
    self.branch1_1 = RIR(features, n_blocks, **kw)
    self.branch1_2 = RIR(features, n_blocks, **kw)
    self.branch1_3 = RIR(features, n_blocks, **kw)
    self.branch2_1 = RIR(features, n_blocks, **kw)
    self.branch2_2 = RIR(features, n_blocks, **kw)
    self.branch2_3 = RIR(features, n_blocks, **kw)
    self.branch3_1 = RIR(features, n_blocks, **kw)
    self.branch3_2 = RIR(features, n_blocks, **kw)
    self.branch3_3 = RIR(features, n_blocks, **kw)
    self.fuse12 = Fuse(features, **kw)
    self.fuse23 = Fuse(features, **kw)

  def __call__(self, x, res_feats):
    """(B, H, W, C) image and residue features -> (B, H, W, C)."""
    x_p, res_p = self.prior(x, res_feats)
    x1 = self.fuse_res(_cat(x_p, res_p))
    x2 = self.DWT_2(_pack(*haar_dwt(x1)))  # (B, ceil(H/2), ceil(W/2), C)
    x3 = self.DWT_3(_pack(*haar_dwt(x2)))
    x1, x2, x3 = self.branch1_1(x1), self.branch2_1(x2), self.branch3_1(x3)
    x1, x2, x3 = self.branch1_2(x1), self.branch2_2(x2), self.branch3_2(x3)
    x1, x2, x3 = self.branch1_3(x1), self.branch2_3(x2), self.branch3_3(x3)
    x2 = self.fuse23(haar_idwt(*_unpack(self.IDWT_3(x3))), x2)
    return self.fuse12(haar_idwt(*_unpack(self.IDWT_2(x2))), x1)


class SPDNet(nnx.Module):
  """Official `Rainnet`: (B, H, W, 3) rainy images in [0, 1] -> (out3, out2, out1).

  Each output is a (B, H, W, 3) clean-image estimate in [0, 1] scale (unclipped), of the
  third (final), second and first stage. The official network works on 0-255 images: the
  input is multiplied by 255 and the outputs divided by 255 here, so converted official
  weights work unchanged. H, W >= 5, any parity. At random initialisation the network
  amplifies float32 rounding to ~1e-3 of the output range (as the official one does):
  compare implementations with param_dtype=jnp.float64 under jax_enable_x64.
  """

  def __init__(self, n_feats: int = 32, n_resblocks: int = 3, *, rngs: nnx.Rngs,
               param_dtype=jnp.float32):
    kw = dict(rngs=rngs, param_dtype=param_dtype)
    c = n_feats
    # One attribute per module of the official model, spelled out as there (their names
    # are the state_dict keys); Subnet's list has the same shape on purpose.
    self.conv_init1 = ConvD(3, c // 2, **kw)
    self.conv_init2 = ConvD(c // 2, c, **kw)
    self.res_extra1 = ResCh(c, n_resblocks, **kw)
    self.sub1 = Subnet(c, n_resblocks, **kw)
    self.res_extra2 = ResCh(c, n_resblocks, **kw)
    self.sub2 = Subnet(c, n_resblocks, **kw)
    self.res_extra3 = ResCh(c, n_resblocks, **kw)
    self.sub3 = Subnet(c, n_resblocks, **kw)
    self.ag1 = ConvD(2 * c, c, **kw)
    self.ag2 = ConvD(3 * c, c, **kw)
    self.ag2_en = ConvD(2 * c, c, **kw)
    self.ag_en = ConvD(3 * c, c, **kw)
    self.output1 = torch_conv(c, 3, **kw)
    self.output2 = torch_conv(c, 3, **kw)
    self.output3 = torch_conv(c, 3, **kw)

  def __call__(self, x):
    if min(x.shape[1:3]) < 5:
      raise ValueError(f'SPDNet needs H, W >= 5, got {x.shape[1:3]}.')
    x = x * RGB_RANGE
    x_init = self.conv_init2(self.conv_init1(x))
    x1 = self.sub1(x_init, self.res_extra1(_residue(x)))
    out1 = self.output1(x1)
    x2 = self.sub2(self.ag1(_cat(x1, x_init)), self.res_extra2(_residue(out1)))
    out2 = self.output2(self.ag2_en(_cat(x2, x1)))
    x3 = self.sub3(self.ag2(_cat(x2, x1, x_init)), self.res_extra3(_residue(out2)))
    out3 = self.output3(self.ag_en(_cat(x3, x2, x1)))
    return out3 / RGB_RANGE, out2 / RGB_RANGE, out1 / RGB_RANGE


def published_loss(outputs, rainy, clean):
  """The official loss: sum over the three outputs of the MSE on the 0-255 scale.

  (trainer.py: loss(out3) + loss(out2) + loss(out1), with `--loss 1*MSE` =
  nn.MSELoss() on 0-255 images), i.e. 255^2 times the sum of the [0, 1] MSEs.
  """
  del rainy
  return sum(jnp.mean(jnp.square(RGB_RANGE * (out - clean))) for out in outputs)


def l1_loss(outputs, rainy, clean):
  """Mean absolute error of the final output (out3) only, on the [0, 1] scale."""
  del rainy
  return jnp.mean(jnp.abs(outputs[0] - clean))


def image(outputs):
  """The derained image: out3, as the official test (trainer.py: `sr, _, _ = model(lr)`)."""
  return outputs[0]


# Official state_dict entries with no counterpart here: InstanceNorms, the unused stride-2
# down convs and transposed convs, fuse*.conv, and the DWT/IDWT Haar filter buffers.
_UNUSED_KEYS = re.compile(
    r'(.*\.ins\.(weight|bias)'
    r'|sub\d+\.(branch1_1_d|branch1_2_d|branch2_1_d|branch2_2_d|down2|down3)'
    r'\.conv\.(weight|bias)'
    r'|sub\d+\.(branch2_1_u|branch2_2_u|branch3_1_u|branch3_2_u)\.conv2d\.(weight|bias)'
    r'|sub\d+\.fuse(12|23)\.conv\.conv\.(weight|bias)'
    r'|sub\d+\.DWT\.h[01]_(col|row)|sub\d+\.IDWT\.g[01]_(col|row))$')


def _torch_layout(model: nnx.Module) -> dict[str, torch_layout.Entry]:
  """Official key -> Entry (models/torch_layout.py); nnx.Sequential's 'layers' is not in
  the official names."""
  return torch_layout.layout_of(model, drop=('layers',))


def convert_torch_state(state_dict: dict[str, np.ndarray], model: SPDNet) -> None:
  """Loads an official SPDNet state_dict (arrays, e.g. torch tensors .numpy()) in place.

  Conv weights OIHW -> HWIO, transposed-conv weights (in, out, kh, kw) -> (kh, kw, in, out),
  SE linear weights (out, in) -> (in, out), cast to the model's parameter dtype. Keys of
  parameters the official forward never uses are ignored. Every parameter is set, so the
  model may be abstract (`nnx.eval_shape(lambda: SPDNet(...))`). Raises CheckpointError
  naming the missing and unexpected keys and the shape mismatches (a few of each); the
  model is unchanged then.
  """
  torch_layout.load_state_dict(state_dict, _torch_layout(model), 'SPDNet',
                               ignore=lambda key: bool(_UNUSED_KEYS.match(key)))
