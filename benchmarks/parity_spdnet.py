"""Whole-model parity of jaxderain's SPDNet against the official PyTorch code.

  python -m benchmarks.parity_spdnet --official=/tmp/spdnet_official/spdnet.py

--official: the official src/model/spdnet.py (github.com/Joyies/SPDNet), with its
src/model/common.py beside it; neither is part of this repository. Needs torch and
pytorch_wavelets (its dependency). The official model is built with random PyTorch
initialisation, run in float64 (its Haar filter buffers, stored in float32, are reset to
exactly +-1/sqrt(2)) on random images of several sizes, converted with
convert_torch_state and compared. It also counts the parameters the official model
defines and those its forward uses (those given a gradient), and reports the float32
error of both ports against float64 for scale. Writes --out
(default benchmarks/results/parity_spdnet.json).
"""

import importlib.util
import json
import math
import os
import sys
import types


import jax  # pylint: disable=g-import-not-at-top

jax.config.update('jax_enable_x64', True)

import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import torch  # pylint: disable=g-import-not-at-top
from absl import app, flags  # pylint: disable=g-import-not-at-top
from flax import nnx  # pylint: disable=g-import-not-at-top

from jaxderain.models import spdnet  # pylint: disable=g-import-not-at-top

_OFFICIAL = flags.DEFINE_string('official', None, 'Path of the official spdnet.py.')
_N_FEATS = flags.DEFINE_integer('n_feats', 32, 'Official --n_feats (Prior_Sp needs 32).')
_N_RESBLOCKS = flags.DEFINE_integer('n_resblocks', 3, 'Official --n_resblocks.')
_SIZES = flags.DEFINE_list('sizes', ['64x64', '67x93', '21x34'], 'Input sizes HxW.')
_OUT = flags.DEFINE_string('out', 'benchmarks/results/parity_spdnet.json', 'JSON output.')


def _load(name, path):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


def load_official(path):
  """The official module; `from model import common` resolves to common.py beside it."""
  sys.modules['model'] = types.ModuleType('model')
  sys.modules['model'].common = _load('model.common', os.path.join(
      os.path.dirname(path), 'common.py'))
  torch.nn.Module.cuda = lambda self, *args, **kwargs: self  # it calls .cuda() on DWTs
  try:
    import pkg_resources  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:  # Only pytorch_wavelets' unused DTCWT imports it (gone in setuptools 81).
    sys.modules['pkg_resources'] = types.SimpleNamespace(resource_stream=None)
  return _load('official_spdnet', path)


def _max_abs(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def main(argv):
  del argv
  torch.set_num_threads(os.cpu_count() or 1)
  torch.manual_seed(0)
  official = load_official(_OFFICIAL.value)
  args = types.SimpleNamespace(n_feats=_N_FEATS.value, n_resblocks=_N_RESBLOCKS.value)
  net32 = official.Rainnet(args).eval()
  net64 = official.Rainnet(args).double().eval()
  net64.load_state_dict(net32.state_dict())
  with torch.no_grad():
    for name, buffer in net64.named_buffers():
      if '.DWT.' in name or '.IDWT.' in name:
        buffer.copy_(torch.sign(buffer) * math.sqrt(0.5))

  defined = sum(p.numel() for p in net64.parameters())
  x = torch.rand(1, 3, 21, 34, dtype=torch.float64) * 255
  sum(out.sum() for out in net64(x)).backward()
  used = sum(p.numel() for p in net64.parameters() if p.grad is not None)
  net64.zero_grad(set_to_none=True)

  state = {k: v.numpy() for k, v in net32.state_dict().items()}
  ours = {}
  for dtype in (jnp.float32, jnp.float64):
    ours[dtype] = spdnet.SPDNet(_N_FEATS.value, _N_RESBLOCKS.value, param_dtype=dtype,
                                rngs=nnx.Rngs(params=1))
    spdnet.convert_torch_state(state, ours[dtype])
  ported = sum(v.size for v in jax.tree.leaves(nnx.state(ours[jnp.float64], nnx.Param)))

  rows = []
  rng = np.random.default_rng(0)
  for size in _SIZES.value:
    h, w = (int(s) for s in size.split('x'))
    images = rng.uniform(size=(2, h, w, 3))  # [0, 1], NHWC
    nchw = torch.from_numpy(images.transpose(0, 3, 1, 2) * 255)
    with torch.no_grad():
      ref64 = [o.numpy().transpose(0, 2, 3, 1) / 255 for o in net64(nchw)]
      ref32 = [o.numpy().transpose(0, 2, 3, 1) / 255 for o in net32(nchw.float())]
    out64 = [np.asarray(o) for o in ours[jnp.float64](jnp.asarray(images))]
    out32 = [np.asarray(o) for o in
             ours[jnp.float32](jnp.asarray(images, jnp.float32))]
    rows.append({
        'size': [h, w],
        'output_range': float(np.ptp(ref64[0])),
        # Per output (out3, out2, out1), max |difference| on the [0, 1] scale.
        'float64_ours_vs_official': [_max_abs(a, b) for a, b in zip(out64, ref64)],
        'float32_official_vs_float64': [_max_abs(a, b) for a, b in zip(ref32, ref64)],
        'float32_ours_vs_float64': [_max_abs(a, b) for a, b in zip(out32, ref64)],
    })
    print(json.dumps(rows[-1]))
  result = {'benchmark': 'parity_spdnet', 'n_feats': _N_FEATS.value,
            'n_resblocks': _N_RESBLOCKS.value, 'torch': torch.__version__,
            'jax': jax.__version__, 'official_params_defined': defined,
            'official_params_used': used, 'ported_params': ported, 'results': rows}
  os.makedirs(os.path.dirname(_OUT.value) or '.', exist_ok=True)
  with open(_OUT.value, 'w') as f:
    json.dump(result, f, indent=2)
  print(json.dumps({k: v for k, v in result.items() if k != 'results'}))


if __name__ == '__main__':
  flags.mark_flag_as_required('official')
  app.run(main)
