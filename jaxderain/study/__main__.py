"""The study's command line.

  python -m jaxderain.study run --grid=claims --scale=cpu --out=studies/claims_cpu
  python -m jaxderain.study run --grid=fig4 --scale=paper --out=DIR --print_commands
  python -m jaxderain.study run --grid=claims --scale=cpu --out=DIR --together=8  # GPU
  python -m jaxderain.study report --out=studies/claims_cpu
  python -m jaxderain.study complexity --categories=natural,urban100 [--data_dir=DIR]
"""

import json
import os
import sys

from jaxderain import cpu_flags

cpu_flags.apply_fast_cpu_flag()  # before JAX starts its backend

import numpy as np  # pylint: disable=g-import-not-at-top
from absl import app, flags

from configs import grid as grid_config
from jaxderain import console
from jaxderain.data import ImageError, background_set, load_category
from jaxderain.study import complexity, grids, sweep
from jaxderain.train.loop import PREEMPTED_EXIT_CODE, Preempted

_GRID = flags.DEFINE_enum('grid', 'smoke', list(grids.GRID_NAMES), 'Named grid.')
_SCALE = flags.DEFINE_enum('scale', 'cpu', list(grid_config.SCALES), 'Scale of every point.')
_SEEDS = flags.DEFINE_list('seeds', None, "Seeds (default: the grid's own).")
_OUT = flags.DEFINE_string('out', None, 'Study folder (points/, report/).')
_PRINT = flags.DEFINE_bool('print_commands', False, 'Print one command per point instead '
                           'of running them.')
_TOGETHER = flags.DEFINE_integer('together', 1, 'Train up to this many fresh points that '
                                 'share model, batch, rain and schedule in one vmapped '
                                 'program: for small models on a GPU (slower on a CPU '
                                 'and for paper-scale models).', lower_bound=1)
_CATEGORIES = flags.DEFINE_list('categories', ['natural'], 'For complexity.')
_DATA_DIR = flags.DEFINE_string('data_dir', os.environ.get('JAXDERAIN_DATA_DIR', ''),
                                'Folder with real categories (optional).')
_PATCHES = flags.DEFINE_integer('patches', 256, 'Patches per category for complexity.')
_PATCH_SIZE = flags.DEFINE_integer('patch_size', 64, 'Patch size for complexity.')


def _require_out():
  if not _OUT.value:
    sys.exit('error: pass --out=DIR, the study folder.')
  return _OUT.value


def main(argv):
  console.quiet_library_logs()
  commands = ('run', 'report', 'complexity')
  if len(argv) != 2 or argv[1] not in commands:
    sys.exit(f'error: name one command: {", ".join(commands)} (see the module docstring).')
  if argv[1] == 'run':
    if _SEEDS.value and not all(s.lstrip('-').isdigit() for s in _SEEDS.value):
      sys.exit(f'error: --seeds must be integers separated by commas, e.g. --seeds=0,1; '
               f'got {",".join(_SEEDS.value)}.')
    seeds = [int(s) for s in _SEEDS.value] if _SEEDS.value else None
    points = grids.grid_points(_GRID.value, _SCALE.value, seeds)
    if _PRINT.value:
      print('\n'.join(sweep.commands(points, _require_out())))
      return
    try:
      summary = sweep.run(points, _require_out(), together=_TOGETHER.value)
    except Preempted as stop:
      print(f'jaxderain: {stop}', file=sys.stderr)
      sys.exit(PREEMPTED_EXIT_CODE)
    print(json.dumps({**summary, 'failed': sorted(summary['failed'])}))
    if summary['failed']:
      sys.exit(f'error: {len(summary["failed"])} point(s) failed; reasons in '
               f'{_OUT.value}/failures.json. Rerun the same command to retry them.')
  elif argv[1] == 'report':
    from jaxderain.study import report  # pylint: disable=g-import-not-at-top
    sys.exit(report.cli(_require_out()))
  else:
    for name in _CATEGORIES.value:
      try:
        category = load_category(name, _DATA_DIR.value or None)
        patches = background_set(category.train, _PATCHES.value, _PATCH_SIZE.value, 0)
      except ImageError as error:
        sys.exit(f'error: {error}')
      values = np.asarray(complexity.complexity(patches.astype(np.float32) / 255.0))
      print(json.dumps({'category': name, 'patches': len(values),
                        'patch_size': _PATCH_SIZE.value, 'mean': float(values.mean()),
                        'std': float(values.std()), 'median': float(np.median(values))}))


if __name__ == '__main__':
  app.run(main)
