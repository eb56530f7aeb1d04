"""PyTorch <-> nnx parameter layouts, both ways: the one place that knows them.

A parameter's `kind` says how its torch and nnx arrays relate:

  kind                     torch                               nnx
  'conv'                   Conv2d weight (O, I, kH, kW)        nnx.Conv kernel (kH, kW, I, O)
  'linear'                 Linear weight (out, in)             nnx.Linear kernel (in, out)
  'conv_transpose'         ConvTranspose2d weight              (kH, kW, I, O), the same taps
                           (I, O, kH, kW)                      (models.spdnet.ConvTranspose2d)
  'flipped_conv_transpose' ConvTranspose2d weight              nnx.ConvTranspose kernel
                           (I, O, kH, kW)                      (kH, kW, I, O), flipped in kH, kW
  'same'                   biases, norm weights, tables: the same array in both

nnx.ConvTranspose (transpose_kernel False, 'VALID') computes y[s*i + a] += x[i] K[k-1-a]
(lax.conv_transpose correlates the dilated input with K) while torch's ConvTranspose2d
computes y[s*i + a] += x[i] W[a], hence the flip; with transpose_kernel True its kernel is
(kH, kW, O, I) and already flipped, the 'conv' layout.

Names: nnx path ('blocks', 0, 'conv1', 'kernel') <-> torch 'blocks.0.conv1.weight'
(`torch_name`). `load_state_dict` checks a whole state_dict against a model before
changing anything and loads it.
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxderain.errors import CheckpointError, capped

# kind -> the axes taking the torch array to the nnx layout (np.transpose's `axes`).
AXES = {'conv': (2, 3, 1, 0), 'linear': (1, 0), 'conv_transpose': (2, 3, 0, 1),
        'flipped_conv_transpose': (2, 3, 0, 1)}
# nnx leaf names that torch calls otherwise (LayerNorm / BatchNorm scale, BN statistics).
_TORCH_LEAF = {'kernel': 'weight', 'scale': 'weight', 'mean': 'running_mean',
               'var': 'running_var'}


def from_torch(array, kind: str):
  """A torch parameter (numpy array) in the nnx layout of `kind`."""
  if kind not in AXES:
    return array
  array = np.transpose(array, AXES[kind])
  return array[::-1, ::-1] if kind == 'flipped_conv_transpose' else array


def to_torch(array, kind: str):
  """An nnx parameter (numpy array) in the torch layout of `kind`: from_torch's inverse."""
  if kind not in AXES:
    return array
  if kind == 'flipped_conv_transpose':
    array = array[::-1, ::-1]
  return np.transpose(array, np.argsort(AXES[kind]))


def torch_shape(shape, kind: str) -> tuple[int, ...]:
  """The torch shape of an nnx parameter of shape `shape` and layout `kind`."""
  if kind not in AXES:
    return tuple(shape)
  return tuple(shape[i] for i in np.argsort(AXES[kind]))


def torch_name(path, drop=()) -> str:
  """nnx path ('blocks', 0, 'conv1', 'kernel') -> torch name 'blocks.0.conv1.weight';
  path parts in `drop` (e.g. nnx.Sequential's 'layers') are left out."""
  *parents, leaf = (str(part) for part in path)
  return '.'.join([p for p in parents if p not in drop] + [_TORCH_LEAF.get(leaf, leaf)])


def kind_of(module: nnx.Module, leaf: str, name: str = '') -> str:
  """The layout kind of `module`'s parameter `leaf` (torch `name`, for errors): 'same'
  unless a kernel. A module of its own says its kernel's kind in a class attribute
  `torch_kernel_kind`."""
  if leaf != 'kernel':
    return 'same'
  if isinstance(module, nnx.ConvTranspose):
    if module.padding != 'VALID' or any(k < s for k, s in zip(module.kernel_size,
                                                              module.strides)):
      raise ValueError(f'{name}: only VALID nnx.ConvTranspose with kernel_size >= strides '
                       'matches torch ConvTranspose2d(padding=0).')
    return 'conv' if module.transpose_kernel else 'flipped_conv_transpose'
  if isinstance(module, nnx.Conv):
    return 'conv'
  if isinstance(module, nnx.Linear):
    return 'linear'
  kind = getattr(module, 'torch_kernel_kind', None)
  if kind is None:
    raise ValueError(f'{name}: no torch layout is known for the kernel of '
                     f'{type(module).__name__}.')
  return kind


class Entry(NamedTuple):
  """One torch state_dict entry: the variable it loads into, its torch shape, and the
  function taking the torch array (numpy) to the variable's layout."""
  variable: nnx.Variable
  shape: tuple[int, ...]
  to_nnx: Callable[[np.ndarray], np.ndarray]


def params_by_torch_name(model: nnx.Module, drop=()) -> dict[str, tuple[nnx.Variable, str]]:
  """Torch name -> (nnx.Param, layout kind) for every parameter of `model`, named as
  `torch_name(path, drop)`."""
  modules = {tuple(path): node for path, node in nnx.iter_graph(model)
             if isinstance(node, nnx.Module)}
  params = {}
  for path, variable in nnx.iter_graph(model):
    if isinstance(variable, nnx.Param):
      name = torch_name(path, drop)
      params[name] = (variable, kind_of(modules[tuple(path[:-1])], str(path[-1]), name))
  return params


def layout_of(model: nnx.Module, drop=()) -> dict[str, Entry]:
  """The state_dict layout of a model whose torch twin has its parameter names and
  modules (torch name -> Entry)."""
  return {name: Entry(variable, torch_shape(variable.shape, kind),
                      lambda array, kind=kind: from_torch(array, kind))
          for name, (variable, kind) in params_by_torch_name(model, drop).items()}


def _listed(what: str, items) -> str:
  """'keys missing: a, b' for a few, '312 keys missing, e.g. a, b, c' for many."""
  items = sorted(items)
  return f'{what}: {capped(items, what)}' if len(items) <= 3 else capped(items, what)


def load_state_dict(state_dict: Mapping[str, np.ndarray], layout: Mapping[str, Entry],
                    model_name: str, ignore: Callable[[str], bool] = lambda key: False):
  """Load a torch state_dict (numpy arrays) into the variables of `layout`, cast to their
  dtypes. Entries for which `ignore(key)` holds may be present or not. Raises
  CheckpointError, one line naming the keys missing, unexpected and misshapen (a few of
  each), before changing anything."""
  missing = layout.keys() - state_dict.keys()
  unexpected = [key for key in state_dict.keys() - layout.keys() if not ignore(key)]
  mismatched = [f'{key} {tuple(np.shape(state_dict[key]))} instead of {entry.shape}'
                for key, entry in layout.items()
                if key in state_dict and tuple(np.shape(state_dict[key])) != entry.shape]
  problems = [_listed(what, items) for what, items in (
      ('keys missing', missing), ('unexpected keys', unexpected),
      ('shape mismatches', mismatched)) if items]
  if problems:
    foreign = '' if layout.keys() & state_dict.keys() else (
        ' (none of its keys is one of this model\'s: is it another architecture\'s?)')
    raise CheckpointError(
        f'This state_dict does not fit the {model_name} model{foreign}: '
        f'{"; ".join(problems)}. Pass an official {model_name} state_dict made with the '
        'same model options.')
  converted = {key: jnp.asarray(entry.to_nnx(np.asarray(state_dict[key])),
                                entry.variable.dtype)
               for key, entry in layout.items()}
  for key, entry in layout.items():
    entry.variable.set_value(converted[key])
