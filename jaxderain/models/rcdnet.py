"""RCDNet (Wang et al., CVPR 2020): a rain convolutional dictionary model, unfolded.

The rainy image O = B + sum_n C_n * M_n: background B plus rain kernels C_n (3 colour
channels each) convolved with sparse rain maps M_n. Each stage takes a proximal gradient
step on M (then a proximal net, Mnet) and on B (then Xnet, which also carries Z, a
num_z-channel dual state). Port of the official code (github.com/hongwang01/RCDNet,
RCDNet_code/for_syn/src/model/rcdnet.py, class Mainnet) with the same arithmetic on the
same 0-255 scale; this module takes [0, 1] images and scales by 255 in and out, so
converted official weights work unchanged (`convert_torch_state`).

Ported: the parameters the official forward pass uses. Left out: `mnet` (its initial
proximal net, never called), `eta1` (never read) and `conv[i]` for i != 1 (the forward
pass reads only conv[1]; the other slices get zero gradients and stay at their init).
With the default options that is 2,975,186 parameters here, against 3,166,355 defined
in the official model, of which 3,091,826 get a gradient there (the full 16-slice conv
tensor among them, 15 x 7,776 of it always zero).

Differences from torch: nnx.BatchNorm updates the running variance with the biased batch
variance (torch the unbiased one, a factor n / (n - 1) with n = batch x H x W). Parameter
initialisation follows torch's defaults (uniform conv weights and biases, bound
1 / sqrt(fan_in), models/layers.py; BN scale 1, bias 0), all parameters float32.
"""

from __future__ import annotations

import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxderain.errors import CheckpointError
from jaxderain.models import torch_layout
from jaxderain.models.layers import torch_conv

# The official rain kernels C9 from init_kernel.mat (RCDNet_code/for_syn/src/, made by
# its Matlab script Rainkernel/init_rain_kernel.m), stored as float32 numpy data in torch
# layout (3 output colour channels, 32 kernels, 9, 9); values in [0, 0.47].
INIT_KERNEL_PATH = pathlib.Path(__file__).with_name('rcdnet_init_kernel.npy')
RGB_RANGE = 255.0  # the official code works on 0-255 images
_DN = ('NHWC', 'HWIO', 'NHWC')


def init_kernel() -> np.ndarray:
  """The official initial rain kernels: float32 (3, 32, 9, 9), torch OIHW layout."""
  return np.load(INIT_KERNEL_PATH)


def _conv(x, kernel):
  """Stride-1 'same' convolution of NHWC `x` with an odd HWIO `kernel` (zero padding)."""
  pad = kernel.shape[0] // 2
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((pad, pad), (pad, pad)),
                                      dimension_numbers=_DN)


def _conv_transpose(x, kernel):
  """The adjoint of `_conv(., kernel)`: torch's conv_transpose2d with padding k // 2."""
  return _conv(x, jnp.swapaxes(kernel[::-1, ::-1], 2, 3))


def _torch_batch_norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
  """BatchNorm2d's defaults (torch momentum 0.1 = flax 0.9, eps 1e-5); the two-pass
  variance, as activations here are on the 0-255 scale."""
  return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, use_fast_variance=False,
                       rngs=rngs)


class ResidualBlock(nnx.Module):
  """conv3x3 - BN - ReLU - conv3x3 - BN: the residual branch (the skip is outside)."""

  def __init__(self, features: int, *, rngs: nnx.Rngs):
    self.conv1 = torch_conv(features, features, rngs=rngs)
    self.bn1 = _torch_batch_norm(features, rngs)
    self.conv2 = torch_conv(features, features, rngs=rngs)
    self.bn2 = _torch_batch_norm(features, rngs)

  def __call__(self, x):
    return self.bn2(self.conv2(jax.nn.relu(self.bn1(self.conv1(x)))))


class ProxNet(nnx.Module):
  """A proximal net: x <- ReLU(x + block(x)) per block; with `threshold` (Mnet) then
  ReLU(x - tau), tau a learnable per-channel threshold (init 0.5). Xnet has none."""

  def __init__(self, features: int, num_blocks: int, threshold: bool, *, rngs: nnx.Rngs):
    self.blocks = nnx.List([ResidualBlock(features, rngs=rngs) for _ in range(num_blocks)])
    self.tau = (nnx.Param(jnp.full((features,), 0.5, jnp.float32)) if threshold
                else None)

  def __call__(self, x):
    for block in self.blocks:
      x = jax.nn.relu(x + block(x))
    return x if self.tau is None else jax.nn.relu(x - self.tau[...])


class RCDNetOutputs(NamedTuple):
  """All estimates, float32 in [0, 1] image scale (unclipped), NHWC.

  b0: (B, H, W, 3) the initial background B^(0) (official `B0`).
  b: (S + 1, B, H, W, 3) backgrounds after stages 1..S, then after the final Xnet;
    b[-1] is the derained image (official `ListB`).
  r: (S, B, H, W, 3) rain layers C * M after stages 1..S (official `ListCM`).
  """
  b0: jax.Array
  b: jax.Array
  r: jax.Array


class RCDNet(nnx.Module):
  """(B, H, W, 3) rainy images in [0, 1] -> RCDNetOutputs; any H, W.

  Options as the official ones: num_stages = `stage` S (the initialisation step plus
  S - 1 iterations), num_kernels = `num_M` (rain kernels per colour channel, = rain map
  channels, at most 32), num_z = `num_Z` (Xnet's extra channels), num_blocks residual
  blocks per proximal net (4 there, fixed), kernel_size the rain kernels' side (9 there;
  odd and at most 9, the centre of the official kernels when smaller).
  """

  def __init__(self, num_stages: int = 17, num_kernels: int = 32, num_z: int = 32,
               num_blocks: int = 4, kernel_size: int = 9, *, rngs: nnx.Rngs):
    kernels = init_kernel()
    if not 1 <= num_kernels <= kernels.shape[1]:
      raise ValueError(f'num_kernels must be in 1..{kernels.shape[1]}, got {num_kernels}.')
    if kernel_size % 2 != 1 or not 1 <= kernel_size <= kernels.shape[2]:
      raise ValueError(f'kernel_size must be odd and at most {kernels.shape[2]}, '
                       f'got {kernel_size}.')
    if num_stages < 1:
      raise ValueError(f'num_stages must be at least 1, got {num_stages}.')
    self.num_stages = num_stages
    start = (kernels.shape[2] - kernel_size) // 2
    crop = kernels[:, :num_kernels, start:start + kernel_size, start:start + kernel_size]
    hwio = torch_layout.from_torch(crop, 'conv')  # (k, k, num_kernels, 3)
    # Rain kernels C: `rain_kernel0` (official weight0) in the first stage's transposed
    # conv only, `rain_kernel` (official conv[1]) everywhere else, shared by all stages.
    # Two device buffers: the train step donates its state, every array once.
    self.rain_kernel0 = nnx.Param(jnp.asarray(hwio, jnp.float32))
    self.rain_kernel = nnx.Param(jnp.asarray(hwio, jnp.float32))
    # z0 = this 3x3 filter of O, each output channel the sum of the 3 channels' means.
    f32 = jnp.float32
    self.z_filter = nnx.Param(jnp.full((3, 3, 3, num_z), 1.0 / 9.0, f32))
    self.tau0 = nnx.Param(jnp.ones((), f32))  # threshold on O - B0 in stage 1 (tau)
    self.eta_x0 = nnx.Param(jnp.full((), 5.0, f32))  # stage 1's B step size x 10 (eta2)
    self.eta_m = nnx.Param(jnp.ones((num_stages - 1,), f32))  # M step sizes x 10 (eta11)
    self.eta_x = nnx.Param(jnp.full((num_stages - 1,), 5.0, f32))  # B step sizes x 10 (eta12)
    channels = 3 + num_z
    self.xnet0 = ProxNet(channels, num_blocks, False, rngs=rngs)  # xnet
    self.mnets = nnx.List([ProxNet(num_kernels, num_blocks, True, rngs=rngs)
                           for _ in range(num_stages)])  # m_stage
    self.xnets = nnx.List([ProxNet(channels, num_blocks, False, rngs=rngs)
                           for _ in range(num_stages)])  # x_stage
    self.xnet_final = ProxNet(channels, num_blocks, False, rngs=rngs)  # fxnet

  def __call__(self, x) -> RCDNetOutputs:
    o = x * RGB_RANGE
    kernel0, kernel = self.rain_kernel0[...] / 10, self.rain_kernel[...] / 10
    out = self.xnet0(jnp.concatenate([o, _conv(o, self.z_filter[...])], axis=-1))
    b0 = out[..., :3]
    z = out[..., 3:]
    # Stage 1: M from the thresholded residual O - B0, then B.
    m = self.mnets[0](_conv_transpose(jax.nn.relu(o - b0 - self.tau0[...]), kernel0))
    r = _conv(m, kernel)
    b = b0 - self.eta_x0[...] / 10 * (b0 - (o - r))
    out = self.xnets[0](jnp.concatenate([b, z], axis=-1))
    b, z = out[..., :3], out[..., 3:]
    bs, rs = [b], [r]
    for i in range(self.num_stages - 1):
      gradient_m = _conv_transpose(r - (o - b), kernel)
      m = self.mnets[i + 1](m - self.eta_m[i] / 10 * gradient_m)
      r = _conv(m, kernel)
      b = b - self.eta_x[i] / 10 * (b - (o - r))
      out = self.xnets[i + 1](jnp.concatenate([b, z], axis=-1))
      b, z = out[..., :3], out[..., 3:]
      bs.append(b)
      rs.append(r)
    bs.append(self.xnet_final(out)[..., :3])
    return RCDNetOutputs(b0 / RGB_RANGE, jnp.stack(bs) / RGB_RANGE,
                         jnp.stack(rs) / RGB_RANGE)


def final_image(outputs: RCDNetOutputs) -> jax.Array:
  """The derained image: the last background estimate, (B, H, W, 3)."""
  return outputs.b[-1]


def _mse255(estimate, target):
  """torch's nn.MSELoss (mean) on the official 0-255 scale, for [0, 1] inputs."""
  return jnp.mean(jnp.square(estimate - target)) * RGB_RANGE ** 2


def published_loss(outputs: RCDNetOutputs, rainy, clean):
  """The official training loss (for_syn/src/trainer.py), each MSE on the 0-255 scale
  (255^2 x the [0, 1] MSE), with O - B the rain layer and S = outputs.r.shape[0]:
  0.1 mse(b0, B) + 0.1 sum_{j<S} [mse(b[j], B) + mse(r[j], O - B)]
  + mse(b[S], B) + 0.9 mse(r[S-1], O - B); b[S] is the final image."""
  rain = rainy - clean
  num_stages = outputs.r.shape[0]
  stage_b = sum(_mse255(outputs.b[j], clean) for j in range(num_stages))
  stage_r = sum(_mse255(outputs.r[j], rain) for j in range(num_stages))
  return (0.1 * _mse255(outputs.b0, clean) + 0.1 * (stage_b + stage_r)
          + _mse255(outputs.b[-1], clean) + 0.9 * _mse255(outputs.r[-1], rain))


def l1_loss(outputs: RCDNetOutputs, rainy, clean):
  """Mean absolute error of the final image against B, on the [0, 1] scale."""
  del rainy
  return jnp.mean(jnp.abs(final_image(outputs) - clean))


def _torch_layout(model: RCDNet) -> dict[str, torch_layout.Entry]:
  """Official state_dict key -> Entry(variable, official shape, to-nnx function)."""
  entry, conv, from_torch = torch_layout.Entry, 'conv', torch_layout.from_torch

  def conv_entry(variable):
    return entry(variable, torch_layout.torch_shape(variable.shape, conv),
                 lambda a: from_torch(a, conv))

  def same(variable):
    return entry(variable, variable.shape, lambda a: a)

  num_stages = model.num_stages
  layout = {
      'weight0': conv_entry(model.rain_kernel0),  # (3, num_kernels, k, k)
      'conv': entry(model.rain_kernel, (num_stages - 1,) + conv_entry(model.rain_kernel).shape,
                    lambda a: from_torch(a[1], conv)),
      'w_z_f': conv_entry(model.z_filter),
      'tau': entry(model.tau0, (1,), lambda a: a[0]),
      'eta2': entry(model.eta_x0, (1,), lambda a: a[0]),
      'eta11': entry(model.eta_m, (num_stages - 1, 1), lambda a: a[:, 0]),
      'eta12': entry(model.eta_x, (num_stages - 1, 1), lambda a: a[:, 0]),
  }
  nets = [('xnet', 'resx', model.xnet0), ('fxnet', 'resx', model.xnet_final)]
  nets += [(f'x_stage.{i}', 'resx', net) for i, net in enumerate(model.xnets)]
  nets += [(f'm_stage.{i}', 'resm', net) for i, net in enumerate(model.mnets)]
  for prefix, block_name, net in nets:
    for n, block in enumerate(net.blocks, 1):
      modules = ((0, block.conv1), (1, block.bn1), (3, block.conv2), (4, block.bn2))
      for index, module in modules:  # indices in the official nn.Sequential
        name = f'{prefix}.{block_name}{n}.{index}'
        if isinstance(module, nnx.Conv):
          layout[f'{name}.weight'] = conv_entry(module.kernel)
          layout[f'{name}.bias'] = same(module.bias)
        else:
          for key, variable in (('weight', module.scale), ('bias', module.bias),
                                ('running_mean', module.mean), ('running_var', module.var)):
            layout[f'{name}.{key}'] = same(variable)
    if net.tau is not None:
      layout[f'{prefix}.tau'] = entry(net.tau, (1, net.tau.shape[0], 1, 1),
                                      lambda a: a.reshape(-1))
  return layout


def _unused_official_key(key: str) -> bool:
  """Entries of an official state_dict that its forward pass never reads."""
  return key == 'eta1' or key.startswith('mnet.') or key.endswith('.num_batches_tracked')


def convert_torch_state(state_dict: dict[str, np.ndarray], model: RCDNet) -> None:
  """Load an official Mainnet state_dict (numpy arrays) into `model` in place.

  Conv weights OIHW -> HWIO (models/torch_layout.py), BN running statistics into
  nnx.BatchStat, the rain kernels from `weight0` and `conv[1]`, tau and the step sizes.
  Unused entries (`eta1`, `mnet.*`, `*.num_batches_tracked`) are ignored. Raises
  CheckpointError naming the missing and unexpected keys and the shape mismatches (a few
  of each), before changing anything.
  """
  if model.num_stages < 3:
    raise CheckpointError('Official RCDNet models need stage >= 3 (they read conv[1]); '
                          f'this model has num_stages={model.num_stages}.')
  torch_layout.load_state_dict(state_dict, _torch_layout(model), 'RCDNet',
                               ignore=_unused_official_key)
