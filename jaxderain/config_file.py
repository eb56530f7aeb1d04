"""The grid-point config file, configs/grid.py, loaded by its path.

configs/grid.py is the documented entry (`--config=configs/grid.py:ARCH,RAIN,N`) and
lives beside the package, not in it; code that needs its tables or `get_config` imports
`grid` from here (`from jaxderain.config_file import grid`), loaded by path as
ml_collections' config flags load it.
"""

from __future__ import annotations

import importlib.util
import pathlib
import types

GRID_FILE = pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'grid.py'


def load(path: pathlib.Path, name: str) -> types.ModuleType:
  """The Python file at `path` as a module called `name`."""
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


grid = load(GRID_FILE, 'jaxderain_configs_grid')  # MODELS, SCALES, parse, get_config, ...
