"""Forward FLOPs of jaxderain's ResNet, UNet and SwinIR, the basis of GFLOP/s figures.

Needs neither torch nor JAX; benchmarks/torch_models.py re-exports `conv_flops`, and
tests/test_torch_mirrors.py checks it against torch's FlopCounterMode on the mirrors.
"""

from __future__ import annotations

ARCHITECTURES = ('resnet', 'unet', 'swinir')


def _conv(k: int, c_in: int, c_out: int, pixels: int) -> int:
  return 2 * k * k * c_in * c_out * pixels


def conv_flops(arch: str, hparams: dict, batch: int, height: int, width: int) -> float:
  """FLOPs of ONE forward pass of `arch` built with `hparams` on (batch, height, width, 3).

  Counted (multiply and add = 2 FLOPs, on the sizes actually computed, i.e. after the
  UNet's / SwinIR's reflect padding):
    * every conv: 2 k^2 C_in C_out H_out W_out;
    * the UNet's 2x2 stride-2 transposed convs: 2 * 2 * 2 C_in C_out H_in W_in;
    * SwinIR's Linear layers: 2 * in * out per token (qkv, proj, fc1, fc2);
    * SwinIR's attention: 2 T N C for q k^T and again for (attention) v, with T tokens,
      N = window_size^2 tokens per window and C = embed_dim (all heads together).
  Not counted: biases, ReLU / GELU, LayerNorm, softmax, the bias-table gather and masks,
  max pooling, padding, rolls, skips and the other elementwise work.
  A training step is usually reported as 3x this (forward + backward ~ 2x forward).
  """
  if arch == 'resnet':
    features, blocks = hparams.get('features', 64), hparams.get('num_blocks', 16)
    pixels = batch * height * width
    return float(_conv(3, 3, features, pixels) + 2 * blocks * _conv(3, features, features,
                                                                    pixels)
                 + _conv(3, features, 3, pixels))
  if arch == 'unet':
    features, scales = hparams.get('features', 64), hparams.get('num_scales', 4)
    stride = 2**(scales - 1)
    height, width = height + -height % stride, width + -width % stride
    widths = [features * 2**s for s in range(scales)]
    pixels = [batch * (height // 2**s) * (width // 2**s) for s in range(scales)]
    total = _conv(3, features, 3, pixels[0])  # tail
    for s in range(scales):  # encoder blocks
      c_in = 3 if s == 0 else widths[s - 1]
      total += _conv(3, c_in, widths[s], pixels[s]) + _conv(3, widths[s], widths[s],
                                                            pixels[s])
    for s in range(scales - 1):  # upsample and decoder blocks
      total += _conv(2, widths[s + 1], widths[s], pixels[s + 1])  # H_in W_in, k = 2
      total += _conv(3, 2 * widths[s], widths[s], pixels[s]) + _conv(3, widths[s],
                                                                     widths[s], pixels[s])
    return float(total)
  if arch == 'swinir':
    dim = hparams.get('embed_dim', 180)
    depths = hparams.get('depths', (6,) * 6)
    window = hparams.get('window_size', 8)
    hidden = int(dim * hparams.get('mlp_ratio', 2.0))
    height, width = height + -height % window, width + -width % window
    tokens = batch * height * width
    total = (_conv(3, 3, dim, tokens) + _conv(3, dim, dim, tokens)  # first, after_body
             + _conv(3, dim, 3, tokens) + len(depths) * _conv(3, dim, dim, tokens))
    per_block = (2 * tokens * (dim * 3 * dim + dim * dim + 2 * dim * hidden)  # linears
                 + 2 * (2 * tokens * window * window * dim))  # q k^T and (attn) v
    return float(total + sum(depths) * per_block)
  raise ValueError(f'No FLOP count for {arch!r}: choose one of {", ".join(ARCHITECTURES)}.')
