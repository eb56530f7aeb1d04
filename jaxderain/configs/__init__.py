"""The package's configs: `grid`, one grid point of the study. configs/grid.py at the
repository's top is the file `--config=configs/grid.py:ARCH,RAIN,N` names; an installed
package run from elsewhere uses its own copy (`with_packaged_grid`)."""

from __future__ import annotations

import pathlib

GRID_FILE = pathlib.Path(__file__).with_name('grid.py')
GRID_ARG = 'configs/grid.py'


def with_packaged_grid(argv: list[str]) -> list[str]:
  """argv with `--config=configs/grid.py...` naming GRID_FILE when the working directory
  has no configs/grid.py."""
  if pathlib.Path(GRID_ARG).is_file():
    return list(argv)
  prefix = f'--config={GRID_ARG}'
  return [f'--config={GRID_FILE}{a[len(prefix):]}' if a.startswith(prefix) else a
          for a in argv]
