"""Turn an official PyTorch checkpoint into an orbax checkpoint that `--mode=eval` restores.

  python -m jaxderain.convert --config=configs/grid.py:rcdnet,medium,64 \
      --torch=model_best.pt --workdir=runs/rcdnet_official

The checkpoint is written at step 0 of the grid point's train state (fresh optimizer and
key), with the converted weights; `launch.py --mode=eval` with the same config and
workdir evaluates it, and `--mode=train` would fine-tune from it. The file is read with
`torch.load(..., weights_only=True)`, so no pickled code runs. torch is optional and
imported only here.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

from jaxderain import experiment, models
from jaxderain.train import checkpoints

_CONFIG = config_flags.DEFINE_config_file('config', None, 'configs/grid.py:ARCH,RAIN,N',
                                          lock_config=True)
_TORCH = flags.DEFINE_string('torch', None, 'PyTorch checkpoint (.pt / .pth).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where to write the orbax checkpoint.')
flags.mark_flags_as_required(['config', 'torch', 'workdir'])

# Keys under which published checkpoints nest their state_dict (BasicSR: params,
# params_ema; others: state_dict, model).
_NESTED = ('params_ema', 'params', 'state_dict', 'model')


def read_state_dict(path) -> dict[str, np.ndarray]:
  """A PyTorch checkpoint's tensors as float/int numpy arrays, 'module.' prefixes
  (DataParallel) removed, nested state_dicts unwrapped."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'{path} is not a file: pass the .pt/.pth checkpoint.')
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError('Converting needs PyTorch: pip install torch (CPU is enough).') from None
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as error:  # pylint: disable=broad-except
    raise ValueError(f'{path} is not a PyTorch checkpoint that loads without running code '
                     f'({type(error).__name__}: {error}).') from None
  for key in _NESTED:
    if isinstance(state, dict) and isinstance(state.get(key), dict):
      state = state[key]
      break
  if not isinstance(state, dict):
    raise ValueError(f'{path} holds a {type(state).__name__}, not a state_dict.')
  return {k.removeprefix('module.'): v.detach().cpu().numpy() for k, v in state.items()
          if hasattr(v, 'detach')}


def convert(config, torch_path, workdir) -> pathlib.Path:
  """Write WORKDIR/checkpoints/0 holding `torch_path`'s weights; returns its folder."""
  architecture = models.get(config.arch)
  if architecture.convert_torch is None:
    available = [n for n, a in models.ARCHITECTURES.items() if a.convert_torch]
    raise ValueError(f'There is no PyTorch converter for {config.arch!r}: converters exist '
                     f'for {", ".join(available) or "no architecture yet"}.')
  state_dict = read_state_dict(torch_path)
  _, graphdef, state, _ = experiment.state_template(config)
  model = nnx.merge(graphdef, state.params, state.model_state)
  architecture.convert_torch(state_dict, model)
  _, params, model_state = nnx.split(model, nnx.Param, ...)
  state = state.replace(params=params, model_state=model_state)
  workdir = pathlib.Path(workdir)
  if (workdir / 'checkpoints').is_dir() and any((workdir / 'checkpoints').iterdir()):
    raise FileExistsError(f'{workdir / "checkpoints"} already holds checkpoints: pass a new '
                          '--workdir for the converted model.')
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / 'config.json').write_text(config.to_json(indent=1))
  manager = checkpoints.checkpoint_manager(workdir)
  checkpoints.save(manager, 0, state)
  checkpoints.wait(manager)
  return workdir / 'checkpoints' / '0'


def main(argv):
  del argv
  try:
    written = convert(_CONFIG.value, _TORCH.value, _WORKDIR.value)
  except (ImportError, ValueError, FileNotFoundError, FileExistsError) as error:
    sys.exit(f'error: {error}')
  print(f'Wrote {written}; evaluate it with: python launch.py --config=... '
        f'--workdir={_WORKDIR.value} --mode=eval')


if __name__ == '__main__':
  app.run(main)
