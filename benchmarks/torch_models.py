"""PyTorch mirrors of jaxderain's ResNet, UNet and SwinIR, for JAX-vs-PyTorch benchmarks.

Needs torch (a benchmark-only dependency, not in requirements.txt). Each class takes the
keyword options of its JAX model (configs/grid.py's MODELS[arch][scale] work for both),
maps NCHW float32 images in [0, 1] to NCHW derained estimates and runs the same
computation as the JAX model, in the same order of operations where it matters:

  * ResNet (jaxderain/models/resnet.py): head conv 3->C, blocks x + conv(relu(conv(x))),
    out = x + tail(...). 3x3 convs, padding 1 ('SAME' for stride 1).
  * UNet (jaxderain/models/unet.py): reflect-pad bottom/right to a multiple of
    2**(num_scales - 1), encoder blocks conv-relu-conv-relu with 2x2 max pooling between
    them, 2x2 stride-2 transposed convs up, concat [encoder skip, upsampled], tail conv,
    out = crop(padded + tail(...)).
  * SwinIR (jaxderain/models/swinir.py, the official upscale 1 / '1conv' / img_range 1
    model): conv_first sees padded - RGB_MEAN, out = crop(padded + conv_last(...)).
    Parameter names and shapes are the official ones (state_dict also holds the official
    relative_position_index buffers), so `jaxderain.models.swinir.convert_torch_state`
    loads `{k: v.numpy() for k, v in model.state_dict().items()}` into the JAX model.
    The official per-img_size `attn_mask` buffers are not kept: the mask is built for
    each input size and cached (as the JAX model builds it at trace time).

Initialisation mirrors the JAX models' (flax's lecun_normal kernels and zero biases for
ResNet / UNet; the official SwinIR init), but benchmarks that compare computations should
copy the weights with `from_jax`. Modules work in either memory format: after
`model.to(memory_format=torch.channels_last)` feed channels_last inputs.

`conv_flops` (benchmarks/flops.py, which needs no torch) counts the forward FLOPs that a
GFLOP/s figure is based on.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.flops import conv_flops  # pylint: disable=unused-import

# jaxderain.models.swinir's constants, repeated so that this file needs no JAX to build.
RGB_MEAN = (0.4488, 0.4371, 0.4040)
MASK_VALUE = -100.0
LAYER_NORM_EPSILON = 1e-5

# flax's truncated_normal(-2, 2) has this std; variance_scaling divides by it.
_TRUNCATED_STD = 0.87962566103423978


def _lecun_normal_(weight: torch.Tensor, fan_in: int) -> None:
  """flax's default conv kernel init (variance_scaling(1, 'fan_in', 'truncated_normal'))."""
  std = math.sqrt(1.0 / fan_in) / _TRUNCATED_STD
  nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)


def _flax_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
  """3x3 stride 1 conv with padding 1 and nnx.Conv's default init (bias 0)."""
  conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
  with torch.no_grad():
    _lecun_normal_(conv.weight, 9 * in_channels)
    conv.bias.zero_()
  return conv


def _reflect_pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
  """Reflect-pad an NCHW batch at the bottom and right to multiples of `multiple`."""
  pad_h, pad_w = -x.shape[-2] % multiple, -x.shape[-1] % multiple
  return F.pad(x, (0, pad_w, 0, pad_h), mode='reflect') if pad_h or pad_w else x


# ---------------------------------------------------------------------------- ResNet


class ResidualBlock(nn.Module):
  """conv3x3 - ReLU - conv3x3 with an identity skip."""

  def __init__(self, features: int):
    super().__init__()
    self.conv1 = _flax_conv(features, features)
    self.conv2 = _flax_conv(features, features)

  def forward(self, x):
    return x + self.conv2(F.relu(self.conv1(x), inplace=True))


class ResNet(nn.Module):
  """Mirror of jaxderain.models.resnet.ResNet: (B, 3, H, W) -> (B, 3, H, W)."""

  def __init__(self, features: int = 64, num_blocks: int = 16):
    super().__init__()
    self.head = _flax_conv(3, features)
    self.blocks = nn.ModuleList([ResidualBlock(features) for _ in range(num_blocks)])
    self.tail = _flax_conv(features, 3)

  def forward(self, x):
    h = self.head(x)
    for block in self.blocks:
      h = block(h)
    return x + self.tail(h)


# ------------------------------------------------------------------------------ UNet


class ConvBlock(nn.Module):
  """conv3x3 - ReLU - conv3x3 - ReLU."""

  def __init__(self, in_features: int, out_features: int):
    super().__init__()
    self.conv1 = _flax_conv(in_features, out_features)
    self.conv2 = _flax_conv(out_features, out_features)

  def forward(self, x):
    return F.relu(self.conv2(F.relu(self.conv1(x), inplace=True)), inplace=True)


class UNet(nn.Module):
  """Mirror of jaxderain.models.unet.UNet: (B, 3, H, W) -> (B, 3, H, W), any H, W."""

  def __init__(self, features: int = 64, num_scales: int = 4):
    super().__init__()
    if num_scales < 1:
      raise ValueError(f'num_scales must be at least 1, got {num_scales}.')
    widths = [features * 2**scale for scale in range(num_scales)]
    self.encoder = nn.ModuleList([
        ConvBlock(3 if scale == 0 else widths[scale - 1], widths[scale])
        for scale in range(num_scales)])
    self.upsample = nn.ModuleList()
    for scale in range(num_scales - 1):
      up = nn.ConvTranspose2d(widths[scale + 1], widths[scale], 2, stride=2)
      with torch.no_grad():  # nnx.ConvTranspose's init: fan_in = 2 * 2 * in_features
        _lecun_normal_(up.weight, 4 * widths[scale + 1])
        up.bias.zero_()
      self.upsample.append(up)
    self.decoder = nn.ModuleList([ConvBlock(2 * widths[scale], widths[scale])
                                  for scale in range(num_scales - 1)])
    self.tail = _flax_conv(features, 3)
    self.stride = 2**(num_scales - 1)

  def forward(self, x):
    height, width = x.shape[-2:]
    padded = _reflect_pad_to(x, self.stride)
    skips = []
    h = padded
    for scale, block in enumerate(self.encoder):
      if scale:
        h = F.max_pool2d(h, 2)
      h = block(h)
      skips.append(h)
    for scale in reversed(range(len(self.decoder))):
      h = self.upsample[scale](h)
      h = self.decoder[scale](torch.cat([skips[scale], h], dim=1))
    return (padded + self.tail(h))[:, :, :height, :width]


# ---------------------------------------------------------------------------- SwinIR


def _window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
  """(B, H, W, C) -> (B * nW, ws * ws, C), windows row-major per image."""
  batch, height, width, channels = x.shape
  x = x.view(batch, height // window_size, window_size, width // window_size, window_size,
             channels)
  return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, channels)


def _window_reverse(windows: torch.Tensor, window_size: int, height: int,
                    width: int) -> torch.Tensor:
  """Inverse of _window_partition: (B * nW, ws * ws, C) -> (B, H, W, C)."""
  channels = windows.shape[-1]
  x = windows.view(-1, height // window_size, width // window_size, window_size,
                   window_size, channels)
  return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


def _relative_position_index(window_size: int) -> torch.Tensor:
  """int64 (ws^2, ws^2): the bias-table row of each (query, key) pair (official layout)."""
  coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size),
                                      indexing='ij')).flatten(1)
  relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window_size - 1
  return relative[..., 0] * (2 * window_size - 1) + relative[..., 1]


def _shifted_window_mask(height: int, width: int, window_size: int,
                         shift_size: int) -> torch.Tensor:
  """float32 (nW, ws^2, ws^2): 0 for token pairs of one region of the rolled map,
  MASK_VALUE across regions (the regions being the official slices (0, -ws),
  (-ws, -shift), (-shift, None) of each axis)."""
  def bands(size):
    index = torch.arange(size)
    return (index >= size - window_size).long() + (index >= size - shift_size).long()

  regions = 3 * bands(height)[:, None] + bands(width)[None, :]
  regions = _window_partition(regions[None, :, :, None], window_size)[..., 0]
  different = regions[:, None, :] != regions[:, :, None]
  return different.float() * MASK_VALUE


class WindowAttention(nn.Module):
  """Window multi-head self-attention with a relative position bias (official names):
  (B * nW, ws^2, C) -> (B * nW, ws^2, C).

  fused: use F.scaled_dot_product_attention (bias and mask as its float attn_mask)
  instead of the explicit softmax(q k^T * scale + bias) v of the official code.
  """

  def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
               fused: bool = False):
    super().__init__()
    if dim % num_heads:
      raise ValueError(f'dim {dim} is not a multiple of num_heads {num_heads}.')
    self.window_size = window_size
    self.num_heads = num_heads
    self.scale = (dim // num_heads)**-0.5
    self.fused = fused
    self.relative_position_bias_table = nn.Parameter(
        torch.zeros((2 * window_size - 1)**2, num_heads))
    self.register_buffer('relative_position_index', _relative_position_index(window_size))
    self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
    self.proj = nn.Linear(dim, dim)

  def forward(self, x, mask=None):
    """mask: None or (nW, ws^2, ws^2), added to the logits of each image's nW windows."""
    windows, tokens, dim = x.shape
    qkv = self.qkv(x).reshape(windows, tokens, 3, self.num_heads, dim // self.num_heads)
    query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B * nW, heads, N, d)
    bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
    bias = bias.view(tokens, tokens, -1).permute(2, 0, 1)  # (heads, N, N)
    if mask is not None:
      bias = bias + mask.unsqueeze(1)  # (nW, heads, N, N)
    groups = (-1,) + tuple(bias.shape[:-2])  # (B, [nW,] heads)
    if self.fused:
      def grouped(t):  # (B * nW, heads, N, d) -> (B, [nW,] heads, N, d), as the bias
        return t.reshape(groups + t.shape[-2:])

      out = F.scaled_dot_product_attention(grouped(query), grouped(key), grouped(value),
                                           attn_mask=bias, scale=self.scale)
      out = out.reshape(query.shape)
    else:
      logits = (query * self.scale) @ key.transpose(-2, -1)
      logits = (logits.view(groups + logits.shape[-2:]) + bias).view(
          windows, self.num_heads, tokens, tokens)
      out = logits.softmax(dim=-1) @ value
    return self.proj(out.transpose(1, 2).reshape(windows, tokens, dim))


class Mlp(nn.Module):
  """fc1 - GELU (exact, erf) - fc2."""

  def __init__(self, in_features: int, hidden_features: int):
    super().__init__()
    self.fc1 = nn.Linear(in_features, hidden_features)
    self.act = nn.GELU()
    self.fc2 = nn.Linear(hidden_features, in_features)

  def forward(self, x):
    return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
  """Pre-norm (shifted-)window attention and MLP with skips on (B, H, W, C) features,
  H and W multiples of window_size. Deliberately the same steps as the block of
  jaxderain/models/swinir.py, line for line: the mirror the timings compare against."""

  def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int,
               mlp_ratio: float, qkv_bias: bool, fused_attention: bool = False):
    super().__init__()
    if not 0 <= shift_size < window_size:
      raise ValueError(f'shift_size must be in [0, {window_size}), got {shift_size}.')
    self.window_size = window_size
    self.shift_size = shift_size
    self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPSILON)
    self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, fused_attention)
    self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPSILON)
    self.mlp = Mlp(dim, int(dim * mlp_ratio))
    self._masks = {}  # (H, W, device) -> shifted-window mask, built once per size

  def _mask(self, height: int, width: int, device) -> torch.Tensor:
    key = (height, width, str(device))
    if key not in self._masks:
      self._masks[key] = _shifted_window_mask(height, width, self.window_size,
                                              self.shift_size).to(device)
    return self._masks[key]

  def forward(self, x):
    height, width = x.shape[1:3]
    shift = self.shift_size
    h = self.norm1(x)
    if shift:
      h = torch.roll(h, (-shift, -shift), dims=(1, 2))
    mask = self._mask(height, width, x.device) if shift else None
    h = self.attn(_window_partition(h, self.window_size), mask)
    h = _window_reverse(h, self.window_size, height, width)
    if shift:
      h = torch.roll(h, (shift, shift), dims=(1, 2))
    x = x + h
    return x + self.mlp(self.norm2(x))


class BasicLayer(nn.Module):
  """`depth` Swin blocks, the odd ones shifted by window_size // 2."""

  def __init__(self, dim: int, depth: int, num_heads: int, window_size: int,
               mlp_ratio: float, qkv_bias: bool, fused_attention: bool = False):
    super().__init__()
    self.blocks = nn.ModuleList([
        SwinTransformerBlock(dim, num_heads, window_size,
                             0 if i % 2 == 0 else window_size // 2, mlp_ratio, qkv_bias,
                             fused_attention)
        for i in range(depth)])

  def forward(self, x):
    for block in self.blocks:
      x = block(x)
    return x


def _nhwc_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
  """A conv on (B, H, W, C) features: the NCHW view of a contiguous NHWC tensor is a
  channels_last tensor, so no copy is made either way."""
  return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class RSTB(nn.Module):
  """Residual Swin Transformer Block: x + conv3x3(blocks(x)) on (B, H, W, C)."""

  def __init__(self, dim: int, depth: int, num_heads: int, window_size: int,
               mlp_ratio: float, qkv_bias: bool, fused_attention: bool = False):
    super().__init__()
    self.residual_group = BasicLayer(dim, depth, num_heads, window_size, mlp_ratio,
                                     qkv_bias, fused_attention)
    self.conv = nn.Conv2d(dim, dim, 3, padding=1)

  def forward(self, x):
    return x + _nhwc_conv(self.conv, self.residual_group(x))


class PatchEmbed(nn.Module):
  """Patch size 1: only the official LayerNorm (if `norm`) on (B, H, W, C)."""

  def __init__(self, dim: int, norm: bool):
    super().__init__()
    self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPSILON) if norm else None

  def forward(self, x):
    return x if self.norm is None else self.norm(x)


class SwinIR(nn.Module):
  """Mirror of jaxderain.models.swinir.SwinIR: (B, 3, H, W) -> (B, 3, H, W), any H, W.

  The official parameter names, shapes and init (Linear trunc_normal(0.02) with zero
  bias, LayerNorm 1 / 0, bias table trunc_normal(0.02), convs PyTorch's default).
  fused_attention: F.scaled_dot_product_attention instead of the explicit softmax.
  """

  def __init__(self, embed_dim: int = 180, depths: Sequence[int] = (6,) * 6,
               num_heads: Sequence[int] = (6,) * 6, window_size: int = 8,
               mlp_ratio: float = 2.0, qkv_bias: bool = True, patch_norm: bool = True,
               fused_attention: bool = False):
    super().__init__()
    if len(depths) != len(num_heads):
      raise ValueError(f'depths {tuple(depths)} and num_heads {tuple(num_heads)} must '
                       'have one entry per RSTB.')
    self.window_size = window_size
    self.register_buffer('mean', torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
    self.conv_first = nn.Conv2d(3, embed_dim, 3, padding=1)
    self.patch_embed = PatchEmbed(embed_dim, patch_norm)
    self.layers = nn.ModuleList([
        RSTB(embed_dim, depth, heads, window_size, mlp_ratio, qkv_bias, fused_attention)
        for depth, heads in zip(depths, num_heads)])
    self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPSILON)
    self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
    self.conv_last = nn.Conv2d(embed_dim, 3, 3, padding=1)
    for module in self.modules():
      if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
          nn.init.zeros_(module.bias)
      elif isinstance(module, WindowAttention):
        nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)

  def forward(self, x):
    height, width = x.shape[-2:]
    padded = _reflect_pad_to(x, self.window_size)
    shallow = self.conv_first(padded - self.mean)
    h = self.patch_embed(shallow.permute(0, 2, 3, 1))  # (B, H, W, C) tokens
    for layer in self.layers:
      h = layer(h)
    deep = self.conv_after_body(self.norm(h).permute(0, 3, 1, 2)) + shallow
    return (padded + self.conv_last(deep))[:, :, :height, :width]


MODELS = {'resnet': ResNet, 'unet': UNet, 'swinir': SwinIR}


def build(arch: str, **hparams) -> nn.Module:
  """The mirror of jaxderain.models.ARCHITECTURES[arch].build(**hparams, rngs=...)."""
  if arch not in MODELS:
    raise ValueError(f'No PyTorch mirror of {arch!r}: choose one of {", ".join(MODELS)}.')
  return MODELS[arch](**hparams)


# ------------------------------------------------------------------- JAX -> PyTorch


def jax_params_in_torch_layout(jax_model) -> dict[str, np.ndarray]:
  """The nnx.Params of `jax_model` as numpy arrays named and laid out as its torch
  mirror's parameters (nnx path ('blocks', 0, 'conv1', 'kernel') -> 'blocks.0.conv1.weight').

  Conv kernels HWIO -> OIHW; Linear (in, out) -> (out, in); LayerNorm scale -> weight;
  nnx.ConvTranspose kernels flipped into torch ConvTranspose2d's: the layouts of
  jaxderain/models/torch_layout.py, which converts official weights the other way.
  """
  from jaxderain.models import torch_layout  # pylint: disable=g-import-not-at-top

  return {name: np.array(torch_layout.to_torch(np.asarray(variable[...], np.float32), kind),
                         np.float32, order='C')  # a writable copy
          for name, (variable, kind) in torch_layout.params_by_torch_name(jax_model).items()}


def from_jax(torch_module: nn.Module, jax_model) -> nn.Module:
  """Copy every parameter of the jaxderain nnx model into its mirror, in place (the torch
  parameters keep their memory format). Raises ValueError naming every missing or
  unexpected parameter and shape mismatch before changing anything. Returns torch_module.

  For SwinIR the other direction is jaxderain.models.swinir.convert_torch_state(
  {k: v.detach().cpu().numpy() for k, v in torch_module.state_dict().items()}, model).
  """
  values = jax_params_in_torch_layout(jax_model)
  params = dict(torch_module.named_parameters())
  problems = []
  if params.keys() - values.keys():
    problems.append(f'missing {sorted(params.keys() - values.keys())}')
  if values.keys() - params.keys():
    problems.append(f'unexpected {sorted(values.keys() - params.keys())}')
  for name in sorted(params.keys() & values.keys()):
    if tuple(params[name].shape) != values[name].shape:
      problems.append(f'{name}: JAX gives {values[name].shape}, torch has '
                      f'{tuple(params[name].shape)}')
  if problems:
    raise ValueError('Cannot copy the JAX model into the torch mirror: '
                     + '; '.join(problems) + '.')
  with torch.no_grad():
    for name, param in params.items():
      param.copy_(torch.from_numpy(values[name]))
  return torch_module
