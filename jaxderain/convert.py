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
import re
import sys

import numpy as np
from absl import flags
from flax import nnx
from ml_collections import config_flags

from jaxderain import cli, configs, experiment, models
from jaxderain.configs import checks
from jaxderain.errors import (CheckpointError, ConfigError, MissingPackage, NotFoundError,
                              WorkdirError, capped, first_line)
from jaxderain.train import checkpoints
from jaxderain.workdir import CONFIG_NAME, hold

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
  (DataParallel) removed, nested state_dicts unwrapped. Raises CheckpointError, one line
  naming the file and what to pass instead, for a file that is not a state_dict."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise NotFoundError(f'{path} is not a file: pass the .pt/.pth checkpoint.')
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise MissingPackage('Converting needs PyTorch: pip install torch (CPU is enough).') from None
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as error:  # pylint: disable=broad-except
    raise CheckpointError(_load_problem(path, error)) from None
  return state_dict_arrays(state, path)


def state_dict_arrays(state, path) -> dict[str, np.ndarray]:
  """The tensors of a loaded checkpoint `state` (torch tensors or numpy arrays) as numpy
  arrays: the first nested state_dict that holds tensors unwrapped, 'module.' prefixes
  removed, bfloat16 and float16 widened to float32. A CheckpointError naming `path` for
  no tensors, or for tensors holding NaN or infinite values."""
  for key in _NESTED:
    nested = state.get(key) if isinstance(state, dict) else None
    if isinstance(nested, dict) and any(map(_is_tensor, nested.values())):
      state = nested
      break
  tensors = ({k.removeprefix('module.'): _as_numpy(v) for k, v in state.items()
              if _is_tensor(v)} if isinstance(state, dict) else {})
  if not tensors:
    raise CheckpointError(f'{path} holds {_described(state)}, not a state_dict: pass a file '
                          f'saved with {_SAVE_STATE_DICT}, a dict of parameter names to '
                          f'tensors{_nested_hint(state)}.')
  broken = [k for k, v in tensors.items() if v.dtype.kind == 'f' and not np.isfinite(v).all()]
  if broken:
    raise CheckpointError(f'{path} has tensors holding NaN or infinite values '
                          f'({capped(broken, "tensors")}), so every output would be '
                          'garbage: pass the weights of a run that had not diverged (an '
                          'earlier checkpoint).')
  return tensors


def _is_tensor(value) -> bool:
  return hasattr(value, 'detach') or isinstance(value, np.ndarray)


def _as_numpy(value) -> np.ndarray:
  """A torch tensor or numpy array as numpy; bfloat16 and float16 as float32."""
  if hasattr(value, 'detach'):
    value = value.detach().cpu()
    if value.is_floating_point() and value.element_size() < 4:
      value = value.float()
    return value.numpy()
  return value.astype(np.float32) if value.dtype.name in ('bfloat16', 'float16') else value


_SAVE_STATE_DICT = "torch.save(model.state_dict(), 'weights.pt')"


def _load_problem(path, error: Exception) -> str:
  """Why torch.load(path, weights_only=True) failed, in one line, and what to pass."""
  message = str(error)
  found = re.search(r'Unsupported global: GLOBAL ([\w.]+)', message)
  if found:  # pickled Python objects, e.g. a whole nn.Module
    return (f'{path} holds pickled Python objects ({found.group(1)}; e.g. a whole model '
            f'saved with torch.save(model)), not a state_dict, and is not loaded, as that '
            f'would run code: where the model is built, run {_SAVE_STATE_DICT} and pass '
            'that file.')
  reason = ('not written by torch.save' if message.startswith('Weights only load failed')
            else f'{type(error).__name__}: {first_line(error, 150)}')
  return (f'{path} is not a PyTorch checkpoint ({reason}): pass the .pt/.pth file of the '
          f'official weights, saved with {_SAVE_STATE_DICT}.')


def _described(state) -> str:
  """'a list of 3 items', 'a Tensor of shape (2, 3)', 'a dict without tensors', ..."""
  if isinstance(state, dict):
    return 'a dict without tensors' if state else 'an empty dict'
  if hasattr(state, 'shape'):
    return f'a {type(state).__name__} of shape {tuple(state.shape)}'
  if isinstance(state, (list, tuple)):
    return f'a {type(state).__name__} of {len(state)} items'
  return f'a {type(state).__name__}'


def _nested_hint(state) -> str:
  """For a dict of dicts (a training checkpoint): which entry may be the state_dict."""
  nested = [str(k) for k, v in state.items()
            if isinstance(v, dict) and v] if isinstance(state, dict) else []
  if not nested:
    return ''
  return (f' (its entries holding dicts: {capped(nested, "entries")}; if one of them is the '
          f"state_dict, save it alone with torch.save(checkpoint[{nested[0]!r}], 'weights.pt'))")


def convert(config, torch_path, workdir) -> pathlib.Path:
  """Write WORKDIR/checkpoints/0 holding `torch_path`'s weights; returns its folder."""
  architecture = models.get(config.arch)
  if architecture.convert_torch is None:
    available = [n for n, a in models.ARCHITECTURES.items() if a.convert_torch]
    raise ConfigError(f'There is no PyTorch converter for {config.arch!r}: converters exist '
                      f'for {", ".join(available) or "no architecture yet"}.')
  checks.check_model_options(config)
  workdir = pathlib.Path(workdir)
  with hold(workdir, 'conversion'):  # nothing else writes it meanwhile
    if (workdir / checkpoints.FOLDER).is_dir() and any((workdir / checkpoints.FOLDER).iterdir()):
      raise WorkdirError(f'{workdir / checkpoints.FOLDER} already holds checkpoints: pass a new '
                         '--workdir for the converted model.')
    state_dict = read_state_dict(torch_path)
    _, graphdef, state, _ = experiment.state_template(config)
    model = nnx.merge(graphdef, state.params, state.model_state)
    try:
      architecture.convert_torch(state_dict, model)
    except CheckpointError as error:
      raise CheckpointError(f'{torch_path}: {error}') from None
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    state = state.replace(params=params, model_state=model_state)
    (workdir / CONFIG_NAME).write_text(config.to_json(indent=1))
    manager = checkpoints.checkpoint_manager(workdir)
    checkpoints.save(manager, 0, state)
    checkpoints.wait(manager)
  return workdir / checkpoints.FOLDER / '0'


def main(argv):
  cli.no_arguments(argv)
  written = convert(_CONFIG.value, _TORCH.value, _WORKDIR.value)
  print(f'Wrote {written}; evaluate it with: python launch.py --config=... '
        f'--workdir={_WORKDIR.value} --mode=eval')


if __name__ == '__main__':
  sys.argv = configs.with_packaged_grid(sys.argv)
  cli.run(main)
