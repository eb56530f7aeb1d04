"""Whole-model parity of models/rcdnet.py against the official RCDNet code (torch, CPU).

  python -m benchmarks.parity_rcdnet --official=PATH [--out=FILE.json]

PATH: the official model file (hongwang01/RCDNet, RCDNet_code/for_syn/src/model/rcdnet.py)
or a checkout of that repository. The file is copied into a temporary folder with an
empty `model.common` stub (it imports that module but uses nothing of it) and the
`init_kernel.mat` found beside it; nothing official is kept. The official model gets
random weights (every entry, the unused ones included), BN running statistics from a
train-mode pass on other data, and the same state_dict is converted into ours. Reported:
the largest absolute differences (0-255 scale) of all outputs in eval mode (running
statistics) and train mode (batch statistics), of the published loss, of the BN running
statistics after that train-mode pass, and the parameter counts. Needs torch and scipy.
The XLA CPU flag is applied as launch.py applies it.
"""

import importlib
import importlib.util
import os
import pathlib
import shutil
import sys
import tempfile
import types

from jaxderain import cpu_flags  # pylint: disable=g-import-not-at-top

cpu_flags.apply_fast_cpu_flag()

from absl import app, flags  # pylint: disable=g-import-not-at-top
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import scipy.io  # pylint: disable=g-import-not-at-top
import torch  # pylint: disable=g-import-not-at-top
from flax import nnx  # pylint: disable=g-import-not-at-top

from benchmarks.common import report  # pylint: disable=g-import-not-at-top
from jaxderain import models  # pylint: disable=g-import-not-at-top
from jaxderain.models import rcdnet  # pylint: disable=g-import-not-at-top

_OFFICIAL = flags.DEFINE_string('official', None, 'The official rcdnet.py or repository.')
_OUT = flags.DEFINE_string('out', 'benchmarks/results/parity_rcdnet.json', 'JSON output.')
_STAGES = flags.DEFINE_integer('stages', 17, 'Stage number S (official `stage`).')
_HEIGHT = flags.DEFINE_integer('height', 67, 'Input height.')
_WIDTH = flags.DEFINE_integer('width', 93, 'Input width.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the random weights and inputs.')
flags.mark_flag_as_required('official')

OFFICIAL_FILE = 'RCDNet_code/for_syn/src/model/rcdnet.py'


def import_official(path: pathlib.Path, folder: pathlib.Path) -> types.ModuleType:
  """The official module, imported from a copy in `folder` (it loads ./init_kernel.mat
  at import time, so the import runs there)."""
  if path.is_dir():
    path = path / OFFICIAL_FILE
  package = folder / 'model'
  package.mkdir()
  shutil.copy(path, package / 'rcdnet.py')
  (package / '__init__.py').write_text('')
  (package / 'common.py').write_text('')
  mat = path.with_name('init_kernel.mat')
  if mat.exists():
    shutil.copy(mat, folder / 'init_kernel.mat')
  else:
    scipy.io.savemat(folder / 'init_kernel.mat', {'C9': rcdnet.init_kernel()})
  # The official file imports its package's siblings (`model.common`): register the
  # package `model` from the folder, then import the file as its module.
  spec = importlib.util.spec_from_file_location('model', package / '__init__.py',
                                                submodule_search_locations=[str(package)])
  sys.modules['model'] = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(sys.modules['model'])
  cwd = os.getcwd()
  os.chdir(folder)  # it reads init_kernel.mat from the working directory
  try:
    return importlib.import_module('model.rcdnet')
  finally:
    os.chdir(cwd)


def randomize(net: torch.nn.Module, calibration: torch.Tensor, gen: torch.Generator):
  """Random values in every parameter, each its own contiguous tensor (the official
  parameters share memory on CPU), then BN running statistics from one train pass."""

  def uniform(shape, low, high):
    return low + (high - low) * torch.rand(shape, generator=gen)

  with torch.no_grad():
    for name, param in net.named_parameters():
      value = param.detach().clone(memory_format=torch.contiguous_format)
      if name in ('weight0', 'conv', 'w_z_f'):
        value = value * uniform(param.shape, 0.7, 1.3)
      elif name in ('eta1', 'eta11'):
        value = uniform(param.shape, 0.5, 1.5)
      elif name in ('eta2', 'eta12'):
        value = uniform(param.shape, 3.0, 7.0)
      elif name.endswith('tau'):
        value = uniform(param.shape, 0.2, 1.2)
      param.data = value  # the proximal nets' convs keep torch's random init
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
      bn.weight.data = uniform(bn.weight.shape, 0.8, 1.2)
      bn.bias.data = 0.1 * torch.randn(bn.bias.shape, generator=gen)
      bn.momentum = 1.0
    net.train()
    net(calibration)
    for bn in bns:
      bn.momentum = 0.1
      bn.running_var.mul_(uniform(bn.running_var.shape, 0.9, 1.1))


def official_loss(b0, list_b, list_r, rainy, clean, stages):
  """for_syn/src/trainer.py's loss with nn.MSELoss, on the 0-255 scale."""
  mse = torch.nn.functional.mse_loss
  loss = 0.1 * mse(b0, clean) + mse(list_b[-1], clean) + 0.9 * mse(list_r[-1], rainy - clean)
  for j in range(stages):
    loss = loss + 0.1 * mse(list_b[j], clean) + 0.1 * mse(list_r[j], rainy - clean)
  return loss


def max_diffs(ours: rcdnet.RCDNetOutputs, b0, list_b, list_r) -> dict:
  """Largest absolute differences on the 0-255 scale, ours (NHWC, [0, 1]) vs official."""

  def diff(a, t):
    reference = t.detach().numpy().transpose(0, 2, 3, 1)
    return float(np.abs(np.asarray(a) * 255.0 - reference).max())

  return {'final_image': diff(ours.b[-1], list_b[-1]), 'b0': diff(ours.b0, b0),
          'all_b': max(diff(ours.b[j], t) for j, t in enumerate(list_b)),
          'all_r': max(diff(ours.r[j], t) for j, t in enumerate(list_r)),
          'reference_max_abs': float(max(t.abs().max() for t in list_b))}


def state_numpy(net: torch.nn.Module) -> dict[str, np.ndarray]:
  return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def main(argv):
  del argv
  stages = _STAGES.value
  torch.manual_seed(_SEED.value)  # the official convs' init
  gen = torch.Generator().manual_seed(_SEED.value)
  with tempfile.TemporaryDirectory() as folder:
    official = import_official(pathlib.Path(_OFFICIAL.value), pathlib.Path(folder))
  net = official.Mainnet(types.SimpleNamespace(stage=stages, num_M=32, num_Z=32))
  kernel_diff = float(np.abs(official.kernel.numpy() - rcdnet.init_kernel()).max())
  defined = sum(p.numel() for p in net.parameters())
  shape = (2, 3, _HEIGHT.value, _WIDTH.value)
  clean = 255 * torch.rand(shape, generator=gen)
  rainy = torch.clamp(clean + 80 * torch.rand(shape, generator=gen) ** 4, 0, 255)
  randomize(net, 255 * torch.rand(shape, generator=gen), gen)
  b0, list_b, list_r = net(rainy)
  official_loss(b0, list_b, list_r, rainy, clean, stages).backward()
  used = sum(p.numel() for p in net.parameters() if p.grad is not None)

  model = rcdnet.RCDNet(num_stages=stages, rngs=nnx.Rngs(0))
  rcdnet.convert_torch_state(state_numpy(net), model)
  x = jnp.asarray(rainy.numpy().transpose(0, 2, 3, 1) / 255.0)
  y = jnp.asarray(clean.numpy().transpose(0, 2, 3, 1) / 255.0)

  net.eval()
  model.eval()
  with torch.no_grad():
    eval_diffs = max_diffs(model(x), *net(rainy))

  net.train()
  model.train()
  with torch.no_grad():
    b0, list_b, list_r = net(rainy)
    torch_loss = float(official_loss(b0, list_b, list_r, rainy, clean, stages))
  ours = model(x)
  train_diffs = max_diffs(ours, b0, list_b, list_r)
  our_loss = float(rcdnet.published_loss(ours, x, y))
  updated = rcdnet.RCDNet(num_stages=stages, rngs=nnx.Rngs(0))
  rcdnet.convert_torch_state(state_numpy(net), updated)  # torch's running statistics
  stats, torch_stats = nnx.state(model, nnx.BatchStat), nnx.state(updated, nnx.BatchStat)
  rel = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b) / (jnp.abs(b) + 1e-3)),
                     stats, torch_stats)

  report([{
      'benchmark': 'parity_rcdnet', 'official': OFFICIAL_FILE, 'stages': stages,
      'input_shape': list(shape), 'seed': _SEED.value,
      'official_params_defined': defined, 'official_params_with_gradient': used,
      'ported_params': models.num_params(model),
      'init_kernel_max_abs_diff': kernel_diff,
      'eval_mode_max_abs_diff_255': eval_diffs,
      'train_mode_max_abs_diff_255': train_diffs,
      'published_loss': {'official': torch_loss, 'ours': our_loss,
                         'rel_diff': abs(our_loss - torch_loss) / torch_loss},
      # nnx.BatchNorm updates with the biased batch variance, torch the unbiased one.
      'bn_running_stats_max_rel_diff_after_train_pass': float(max(jax.tree.leaves(rel))),
      'bn_unbiased_factor_minus_1': 1 / (shape[0] * shape[2] * shape[3] - 1),
      'torch': torch.__version__,
  }], _OUT.value)


if __name__ == '__main__':
  app.run(main)
