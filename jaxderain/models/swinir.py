"""SwinIR (Liang et al. 2021) in its same-resolution restoration setting (upscale 1).

Follows the official models/network_swinir.py (JingyunLiang/SwinIR) as built for color
denoising: upsampler '', img_range 1, resi_connection '1conv', ape False, no dropout:

  F0 = conv_first(O' - mean)                              O' = O reflect-padded
  F  = conv_after_body(norm(RSTB_K(...RSTB_1(patch_embed(F0))))) + F0
  out = crop(O' + conv_last(F))

The official code subtracts the DIV2K RGB mean (0.4488, 0.4371, 0.4040) before
conv_first and adds it back at the end whatever img_range is; with img_range 1 that
leaves out = O' + conv_last(F), but conv_first sees O' - mean, as here. Features stay
NHWC (B, H, W, C) throughout: the official patch embed/unembed (patch size 1) are
reshapes between that and (B, H*W, C) tokens, so only patch_embed's LayerNorm remains.

Differences, none of which changes the output of a converted official model:
  * The shifted-window attention mask is built for the actual padded input size at
    trace time (the official code stores one for img_size and recomputes otherwise).
  * The official blocks shrink the window and drop the shift when img_size <= window
    size; this model always behaves as for img_size > window_size (the official setting).
  * Stochastic depth (the official drop_path_rate 0.1 in training) is not implemented:
    the model is deterministic, as the official one in eval mode.
  * Softmax is normalised after the product with the values and GELU is written with
    erf (not erfc): the same functions, faster to differentiate on CPU.
Initialisation follows the official one: Linear N(0, 0.02) (timm's trunc_normal_
truncates at +-2, i.e. +-100 std) with zero bias, LayerNorm 1/0, relative position bias
table N(0, 0.02), convs PyTorch's default U(+-1/sqrt(fan_in)) for weight and bias.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxderain.models import torch_layout
from jaxderain.models.layers import torch_conv

# The official model's RGB mean (DIV2K), subtracted before conv_first for 3 channels.
RGB_MEAN = (0.4488, 0.4371, 0.4040)
# The official masked-logit value for token pairs from different shifted regions.
MASK_VALUE = -100.0
LAYER_NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's default


def _linear(in_features: int, out_features: int, *, use_bias: bool = True,
            rngs: nnx.Rngs) -> nnx.Linear:
  """nnx.Linear with the official init: kernel N(0, 0.02), zero bias."""
  return nnx.Linear(in_features, out_features, use_bias=use_bias,
                    kernel_init=nnx.initializers.normal(0.02), rngs=rngs)


def _layer_norm(features: int, *, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(features, epsilon=LAYER_NORM_EPSILON, use_fast_variance=False,
                       rngs=rngs)


def window_partition(x, window_size: int):
  """(B, H, W, C) -> (B * H/ws * W/ws, ws * ws, C): windows in row-major order per image."""
  batch, height, width, channels = x.shape
  x = x.reshape(batch, height // window_size, window_size, width // window_size,
                window_size, channels)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, channels)


def window_reverse(windows, window_size: int, height: int, width: int):
  """Inverse of window_partition: (B * nW, ws * ws, C) -> (B, H, W, C)."""
  channels = windows.shape[-1]
  x = windows.reshape(-1, height // window_size, width // window_size, window_size,
                      window_size, channels)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


@functools.lru_cache(maxsize=None)
def relative_position_index(window_size: int) -> np.ndarray:
  """int32 (ws^2, ws^2): row of the (2ws-1)^2 bias table for each (query, key) pair."""
  coords = np.stack(np.meshgrid(np.arange(window_size), np.arange(window_size),
                                indexing='ij')).reshape(2, -1)
  relative = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + window_size - 1
  return (relative[..., 0] * (2 * window_size - 1) + relative[..., 1]).astype(np.int32)


@functools.lru_cache(maxsize=None)
def shifted_window_regions(height: int, width: int, window_size: int,
                           shift_size: int) -> np.ndarray:
  """int32 (nW, ws^2): for each window of the rolled (H, W) map, the region (0-8) of each
  token; tokens that wrapped around the image edge in the roll get other regions."""
  def bands(size):
    # The official slices (0, -ws), (-ws, -shift), (-shift, None) as labels 0, 1, 2.
    index = np.arange(size)
    return (index >= size - window_size).astype(np.int32) + (index >= size - shift_size)

  regions = 3 * bands(height)[:, None] + bands(width)[None, :]
  return window_partition(regions[None, :, :, None], window_size)[..., 0]


def shifted_window_mask(height: int, width: int, window_size: int, shift_size: int):
  """float32 (nW, ws^2, ws^2) additive attention mask for the shifted windows of a padded
  (H, W) map: 0 within a region, MASK_VALUE (-100, as the official code) across regions."""
  regions = jnp.asarray(shifted_window_regions(height, width, window_size, shift_size))
  return jnp.where(regions[:, None, :] != regions[:, :, None], MASK_VALUE, 0.0)


class WindowAttention(nnx.Module):
  """Multi-head self-attention within windows plus a learned relative position bias:
  (B * nW, ws^2, C) tokens -> (B * nW, ws^2, C)."""

  def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
               *, rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f'dim {dim} is not a multiple of num_heads {num_heads}.')
    self.window_size = window_size
    self.num_heads = num_heads
    self.scale = (dim // num_heads)**-0.5
    self.relative_position_bias_table = nnx.Param(nnx.initializers.normal(0.02)(
        rngs.params(), ((2 * window_size - 1)**2, num_heads), jnp.float32))
    self.qkv = _linear(dim, 3 * dim, use_bias=qkv_bias, rngs=rngs)
    self.proj = _linear(dim, dim, rngs=rngs)

  def __call__(self, x, mask=None):
    """mask: None or (nW, ws^2, ws^2) added to the logits of each image's nW windows."""
    windows, tokens, dim = x.shape
    qkv = self.qkv(x).reshape(windows, tokens, 3, self.num_heads, dim // self.num_heads)
    query, key, value = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    logits = (query * self.scale) @ key.swapaxes(-2, -1)  # (B * nW, heads, N, N)
    bias = self.relative_position_bias_table[...][
        relative_position_index(self.window_size).reshape(-1)]
    bias = bias.reshape(tokens, tokens, -1).transpose(2, 0, 1)  # (heads, N, N)
    if mask is not None:
      bias = bias + mask[:, None]  # (nW, heads, N, N), each image's windows in turn
    logits = (logits.reshape((-1,) + bias.shape) + bias).reshape(logits.shape)
    # Softmax normalised after the product with the values: the same result, and its
    # gradient ran about 2x faster on CPU than jax.nn.softmax's.
    weights = jnp.exp(logits - jax.lax.stop_gradient(logits.max(-1, keepdims=True)))
    out = (weights @ value) / weights.sum(-1, keepdims=True)
    return self.proj(out.transpose(0, 2, 1, 3).reshape(windows, tokens, dim))


class Mlp(nnx.Module):
  """fc1 - GELU (exact erf form, torch's default) - fc2 on the last axis."""

  def __init__(self, in_features: int, hidden_features: int, *, rngs: nnx.Rngs):
    self.fc1 = _linear(in_features, hidden_features, rngs=rngs)
    self.fc2 = _linear(hidden_features, in_features, rngs=rngs)

  def __call__(self, x):
    h = self.fc1(x)
    # jax.nn.gelu(approximate=False) is the same function written with erfc, whose
    # gradient ran 10x slower under the fast XLA CPU flag (jaxderain/cpu_flags.py).
    return self.fc2(0.5 * h * (1 + jax.lax.erf(h * math.sqrt(0.5))))


class SwinTransformerBlock(nnx.Module):
  """Pre-norm (shifted-)window attention and MLP, each with a skip: (B, H, W, C) ->
  (B, H, W, C), H and W multiples of window_size."""

  def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int,
               mlp_ratio: float, qkv_bias: bool, *, rngs: nnx.Rngs):
    if not 0 <= shift_size < window_size:
      raise ValueError(f'shift_size must be in [0, {window_size}), got {shift_size}.')
    self.window_size = window_size
    self.shift_size = shift_size
    self.norm1 = _layer_norm(dim, rngs=rngs)
    self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, rngs=rngs)
    self.norm2 = _layer_norm(dim, rngs=rngs)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), rngs=rngs)

  def __call__(self, x):
    height, width = x.shape[1:3]
    shift = self.shift_size
    h = self.norm1(x)
    if shift:
      h = jnp.roll(h, (-shift, -shift), axis=(1, 2))
    mask = (shifted_window_mask(height, width, self.window_size, shift) if shift
            else None)
    h = self.attn(window_partition(h, self.window_size), mask)
    h = window_reverse(h, self.window_size, height, width)
    if shift:
      h = jnp.roll(h, (shift, shift), axis=(1, 2))
    x = x + h
    return x + self.mlp(self.norm2(x))


class BasicLayer(nnx.Module):
  """`depth` Swin blocks, the odd ones shifted by window_size // 2."""

  def __init__(self, dim: int, depth: int, num_heads: int, window_size: int,
               mlp_ratio: float, qkv_bias: bool, *, rngs: nnx.Rngs):
    self.blocks = nnx.List([
        SwinTransformerBlock(dim, num_heads, window_size,
                             0 if i % 2 == 0 else window_size // 2, mlp_ratio, qkv_bias,
                             rngs=rngs)
        for i in range(depth)])

  def __call__(self, x):
    for block in self.blocks:
      x = block(x)
    return x


class RSTB(nnx.Module):
  """Residual Swin Transformer Block: x + conv3x3(blocks(x)) on (B, H, W, C)."""

  def __init__(self, dim: int, depth: int, num_heads: int, window_size: int,
               mlp_ratio: float, qkv_bias: bool, *, rngs: nnx.Rngs):
    self.residual_group = BasicLayer(dim, depth, num_heads, window_size, mlp_ratio,
                                     qkv_bias, rngs=rngs)
    self.conv = torch_conv(dim, dim, rngs=rngs)

  def __call__(self, x):
    return x + self.conv(self.residual_group(x))


class PatchEmbed(nnx.Module):
  """Patch size 1: (B, H, W, C) features are already the tokens; LayerNorm if `norm`."""

  def __init__(self, dim: int, norm: bool, *, rngs: nnx.Rngs):
    self.norm = _layer_norm(dim, rngs=rngs) if norm else None

  def __call__(self, x):
    return x if self.norm is None else self.norm(x)


class SwinIR(nnx.Module):
  """(B, H, W, 3) rainy images in [0, 1] -> (B, H, W, 3) derained estimates (unclipped).

  Defaults: the official color denoising model (11,504,163 parameters). Options keep
  the official names; any H, W (reflect-padded to multiples of window_size).
  """

  def __init__(self, embed_dim: int = 180, depths: Sequence[int] = (6,) * 6,
               num_heads: Sequence[int] = (6,) * 6, window_size: int = 8,
               mlp_ratio: float = 2.0, qkv_bias: bool = True, patch_norm: bool = True,
               *, rngs: nnx.Rngs):
    if len(depths) != len(num_heads):
      raise ValueError(f'depths {tuple(depths)} and num_heads {tuple(num_heads)} must '
                       'have one entry per RSTB.')
    self.window_size = window_size
    self.conv_first = torch_conv(3, embed_dim, rngs=rngs)
    self.patch_embed = PatchEmbed(embed_dim, patch_norm, rngs=rngs)
    self.layers = nnx.List([
        RSTB(embed_dim, depth, heads, window_size, mlp_ratio, qkv_bias, rngs=rngs)
        for depth, heads in zip(depths, num_heads)])
    self.norm = _layer_norm(embed_dim, rngs=rngs)
    self.conv_after_body = torch_conv(embed_dim, embed_dim, rngs=rngs)
    self.conv_last = torch_conv(embed_dim, 3, rngs=rngs)

  def __call__(self, x):
    height, width = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (0, -height % self.window_size),
                         (0, -width % self.window_size), (0, 0)), mode='reflect')
    shallow = self.conv_first(padded - jnp.asarray(RGB_MEAN, x.dtype))
    h = self.patch_embed(shallow)
    for layer in self.layers:
      h = layer(h)
    deep = self.conv_after_body(self.norm(h)) + shallow
    return (padded + self.conv_last(deep))[:, :height, :width]


# Official buffers that this model recomputes instead of loading.
_RECOMPUTED_BUFFERS = ('relative_position_index', 'attn_mask')


def convert_torch_state(state_dict: dict[str, np.ndarray], model: SwinIR) -> None:
  """Load an official SwinIR state_dict (numpy arrays, official keys, e.g. a checkpoint's
  'params' entry) into `model` in place.

  Convs OIHW -> HWIO, Linear (out, in) -> (in, out), LayerNorm weight -> scale
  (models/torch_layout.py); the relative_position_index and attn_mask buffers are
  ignored (recomputed). Raises CheckpointError naming the missing and unexpected keys
  and the shape mismatches (a few of each), before changing anything.
  """
  torch_layout.load_state_dict(
      state_dict, torch_layout.layout_of(model), 'SwinIR',
      ignore=lambda key: key.rsplit('.', 1)[-1] in _RECOMPUTED_BUFFERS)
