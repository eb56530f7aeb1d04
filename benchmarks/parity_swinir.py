"""Whole-model parity of jaxderain's SwinIR with the official PyTorch code.

  python -m benchmarks.parity_swinir --official=PATH [--sizes=128x128,67x93] [--out=FILE]

PATH: a checkout of github.com/JingyunLiang/SwinIR (only models/network_swinir.py is
used; never copy it into this repository). Builds the official color denoising model
(the default SwinIR here), fills every parameter with random values, converts its
state_dict with `convert_torch_state`, runs both on the same random images (eval mode,
jitted JAX) and writes the max abs differences to --out
(default benchmarks/results/parity_swinir.json). Needs torch; timm, which the official
file imports for three helpers, is replaced by a stand-in when absent.
"""

import importlib.util
import pathlib
import sys
import time
import types

from jaxderain import cpu_flags  # pylint: disable=g-import-not-at-top

cpu_flags.apply_fast_cpu_flag()

import numpy as np  # pylint: disable=g-import-not-at-top
import torch  # pylint: disable=g-import-not-at-top
from absl import app, flags  # pylint: disable=g-import-not-at-top
from flax import nnx  # pylint: disable=g-import-not-at-top

from benchmarks.common import report  # pylint: disable=g-import-not-at-top
from jaxderain.models import swinir  # pylint: disable=g-import-not-at-top

_OFFICIAL = flags.DEFINE_string('official', None, 'Checkout of JingyunLiang/SwinIR.',
                                required=True)
_SIZES = flags.DEFINE_list('sizes', ['128x128', '67x93'],
                           'HxW input sizes (128x128 uses the stored attn_mask).')
_OUT = flags.DEFINE_string('out', 'benchmarks/results/parity_swinir.json', 'JSON output.')


def _stand_in_for_timm():
  """timm.models.layers with the three names the official file imports (eval only)."""
  layers = types.ModuleType('timm.models.layers')
  layers.DropPath = lambda rate: torch.nn.Identity()
  layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
  layers.trunc_normal_ = torch.nn.init.trunc_normal_
  timm = types.ModuleType('timm')
  timm.models = types.ModuleType('timm.models')
  timm.models.layers = layers
  sys.modules.update({'timm': timm, 'timm.models': timm.models,
                      'timm.models.layers': layers})


def official_model():
  """The official color denoising SwinIR (main_test_swinir.py, task color_dn), eval."""
  try:
    import timm.models.layers  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    _stand_in_for_timm()
  path = pathlib.Path(_OFFICIAL.value) / 'models' / 'network_swinir.py'
  spec = importlib.util.spec_from_file_location('network_swinir', path)
  network_swinir = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(network_swinir)
  model = network_swinir.SwinIR(
      upscale=1, in_chans=3, img_size=128, window_size=8, img_range=1.,
      depths=[6, 6, 6, 6, 6, 6], embed_dim=180, num_heads=[6, 6, 6, 6, 6, 6], mlp_ratio=2,
      upsampler='', resi_connection='1conv')
  return model.eval()


def randomize(model: torch.nn.Module, seed: int) -> None:
  """Random values for every parameter (the official init has zero biases, unit norms):
  LayerNorm weights 1 + N(0, 0.1), other vectors N(0, 0.05), weights and the bias
  table N(0, 1 / fan_in) with fan_in = size / shape[0]."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, param in model.named_parameters():
      noise = torch.randn(param.shape, generator=generator)
      if param.ndim > 1:
        param.copy_(noise / param[0].numel()**0.5)
      elif 'norm' in name and name.endswith('weight'):
        param.copy_(1 + 0.1 * noise)
      else:
        param.copy_(0.05 * noise)


def main(argv):
  del argv
  torch.set_grad_enabled(False)
  official = official_model()
  randomize(official, seed=0)
  state_dict = {key: value.numpy() for key, value in official.state_dict().items()}
  model = swinir.SwinIR(rngs=nnx.Rngs(params=0))
  swinir.convert_torch_state(state_dict, model)
  forward = nnx.jit(lambda module, x: module(x))
  results = []
  rng = np.random.default_rng(0)
  for size in _SIZES.value:
    height, width = map(int, size.split('x'))
    images = rng.uniform(size=(1, height, width, 3)).astype(np.float32)
    start = time.perf_counter()
    expected = official(torch.from_numpy(images).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    torch_s = time.perf_counter() - start
    start = time.perf_counter()
    actual = np.asarray(forward(model, images))
    jax_s = time.perf_counter() - start
    difference = np.abs(actual - expected.numpy())
    results.append({'benchmark': 'parity_swinir', 'input_hw': [height, width],
                    'params': int(sum(p.numel() for p in official.parameters())),
                    'max_abs_diff': float(difference.max()),
                    'mean_abs_diff': float(difference.mean()),
                    'output_abs_max': float(np.abs(expected.numpy()).max()),
                    'torch_forward_s': torch_s, 'jax_compile_and_forward_s': jax_s,
                    'torch': torch.__version__})
  report(results, _OUT.value)


if __name__ == '__main__':
  app.run(main)
