"""The study's command line.

  python -m jaxderain.study run --grid=claims --scale=cpu --out=studies/claims_cpu
  python -m jaxderain.study run --grid=fig4 --scale=paper --out=DIR --print_commands
  python -m jaxderain.study run --grid=claims --scale=cpu --out=DIR --together=8  # GPU
  python -m jaxderain.study run --grid=fig4 --scale=paper --out=DIR --engine=ray [--address=auto]
  python -m jaxderain.study report --out=docs/studies/cpu [--grid=study --scale=cpu]
  python -m jaxderain.study report --out=docs/studies/cpu --test_rain=unseen  # report_unseen/
  python -m jaxderain.study report --out=docs/studies/cpu-long --previous_rung=docs/studies/cpu
  python -m jaxderain.study status --out=DIR [--grid=G --scale=S]   # from the folder alone
  python -m jaxderain.study pack --out=DIR   # each done point's eval/*.json into results.json
  python -m jaxderain.study plan --grid=fig4 --scale=paper --gpus=8  # cost before running
  python -m jaxderain.study plan --power --out=docs/studies/cpu  # seeds the primary tests need
  python -m jaxderain.study unseen --data_dir=../shared/data  # how unseen each test rain is
  python -m jaxderain.study complexity --categories=natural,urban100 [--data_dir=DIR]
"""

import json
import os

import jax
import numpy as np
from absl import flags

from jaxderain import cli
from jaxderain.configs import grid as grid_config
from jaxderain.errors import ConfigError, DataError, WorkdirBusy
from jaxderain.study import (complexity, folders, grids, plan, primary, results, status,
                             sweep, unseen)
from jaxderain.study.results import TEST_RAINS
from jaxderain.workdir import hold

_GRID = flags.DEFINE_enum('grid', 'smoke', list(grids.GRID_NAMES), 'Named grid.')
_SCALE = flags.DEFINE_enum('scale', 'cpu', list(grid_config.SCALES),
                           'Scale of every point.')
_SEEDS = flags.DEFINE_list('seeds', None, "Seeds (default: the grid's own).")
_OUT = flags.DEFINE_string('out', None, 'Study folder (points/, report/).')
_PRINT = flags.DEFINE_bool('print_commands', False, 'Print one command per point instead '
                           'of running them.')
_TOGETHER = flags.DEFINE_integer('together', 1, 'Train up to this many fresh points that '
                                 'share model, batch, rain and schedule in one vmapped '
                                 'program: for small models on a GPU (slower on a CPU '
                                 'and for paper-scale models).', lower_bound=1)
_ENGINE = flags.DEFINE_enum('engine', 'local', ['local', 'ray'], 'local: points one after '
                            'another in this process; ray: each point a Ray task, run '
                            'concurrently wherever the cluster has room (docs/scaling.md).')
_ADDRESS = flags.DEFINE_string('address', None, 'For --engine=ray: the cluster (auto: the one '
                               '`ray start` made on this machine; HOST:PORT of a head '
                               'node); default: start a new one on this machine.')
_GPUS_PER_POINT = flags.DEFINE_float('gpus_per_point', None, 'For --engine=ray: GPUs per '
                                     'point (default: 1 on a cluster with GPUs, else 0).',
                                     lower_bound=0)
_CPUS_PER_POINT = flags.DEFINE_float('cpus_per_point', 1, 'For --engine=ray: CPUs per point.',
                                     lower_bound=0)
_RETRIES = flags.DEFINE_integer('retries', 3, 'For --engine=ray: runs of a point again after '
                                'its worker or node is lost.', lower_bound=0)
_TEST_RAIN = flags.DEFINE_enum('test_rain', 'auto', ['auto', *TEST_RAINS],
                               'For report: the test rain of the verdicts (auto: Rain100L '
                               'when every point has it, else the built-in unseen rain).')
_PREVIOUS_RUNG = flags.DEFINE_string('previous_rung', None, 'For report: the study folder of '
                                     'another rung: the report says how the primary tests '
                                     'of the trend claims moved from there.')
_CATEGORIES = flags.DEFINE_list('categories', ['natural'], 'For complexity.')
_DATA_DIR = flags.DEFINE_string('data_dir', os.environ.get('JAXDERAIN_DATA_DIR', ''),
                                'Folder with real categories (optional).')
_PATCHES = flags.DEFINE_integer('patches', 256, 'Patches per category for complexity.')
_PATCH_SIZE = flags.DEFINE_integer('patch_size', 64, 'Patch size for complexity.')
_GPUS = flags.DEFINE_integer('gpus', 8, 'For plan: H100s to plan for (0: this 2-core CPU).',
                             lower_bound=0, upper_bound=100_000)
_POWER = flags.DEFINE_bool('power', False, 'For plan: instead of the cost, the seeds a point '
                           "each primary test needs, from the --out folder's exploratory "
                           'seeds (study/primary.py).')


def _require_out():
  if not _OUT.value:
    raise ConfigError('pass --out=DIR, the study folder.')
  return _OUT.value


def _seeds() -> list[int] | None:
  if _SEEDS.value and not all(s.isdigit() and int(s) <= grid_config.MAX_SEED
                              for s in _SEEDS.value):
    raise ConfigError(f'--seeds must be integers from 0 to {grid_config.MAX_SEED} separated '
                      f'by commas, e.g. --seeds=0,1; got {",".join(_SEEDS.value)}.')
  return [int(s) for s in _SEEDS.value] if _SEEDS.value else None


def _given_grid():
  """The points of --grid/--scale when either is passed, else None."""
  if flags.FLAGS['grid'].present or flags.FLAGS['scale'].present:
    return grids.grid_points(_GRID.value, _SCALE.value, _seeds())
  return None


def _run(points, out) -> dict:
  """Run the points with the chosen engine, holding OUT's lock: one sweep per folder."""
  if _ENGINE.value == 'ray':
    jax.config.update('jax_platforms', 'cpu')  # the driver leaves the GPUs to the tasks
  with hold(out, 'sweep', flag='--out'):
    if _ENGINE.value == 'local':
      return sweep.run(points, out, together=_TOGETHER.value)
    from jaxderain.study import on_ray  # pylint: disable=g-import-not-at-top
    return on_ray.run(points, out, together=_TOGETHER.value, address=_ADDRESS.value,
                      gpus_per_point=_GPUS_PER_POINT.value,
                      cpus_per_point=_CPUS_PER_POINT.value, retries=_RETRIES.value)


def _pack(study: folders.StudyFolder) -> tuple[list[str], list[str]]:
  """Pack each done point's eval files into its results.json, holding the point's lock
  (a point in use is left out); returns (packed, in use) point names."""
  packed, busy = [], []
  for point in study.points():
    try:
      with hold(point.path, 'packing results', '--out'):
        if point.done_record_or_none() and point.pack():
          packed.append(point.name)
    except WorkdirBusy:
      busy.append(point.name)
  return packed, busy


def main(argv):
  commands = ('run', 'report', 'complexity', 'status', 'plan', 'unseen', 'pack')
  if len(argv) != 2 or argv[1] not in commands:
    raise ConfigError(f'name one command: {", ".join(commands)} (see the module docstring).')
  if argv[1] == 'run':
    points = grids.grid_points(_GRID.value, _SCALE.value, _seeds())
    if _PRINT.value:
      print('\n'.join(sweep.commands(points, _require_out())))
      return
    summary = _run(points, _require_out())
    print(json.dumps({**summary, 'failed': sorted(summary['failed'])}))
    if summary['failed']:
      raise DataError(f'{len(summary["failed"])} point(s) failed; `python -m jaxderain.study '
                      f'status --out={_OUT.value}` says why. Rerun the same command to retry '
                      'them.')
  elif argv[1] == 'status':
    print('\n'.join(status.lines(status.point_states(_require_out(), _given_grid()))))
  elif argv[1] == 'plan' and _POWER.value:
    points, _ = results.load_points(_require_out())
    table = primary.power(results.result_rows(points))
    print('\n'.join(primary.power_lines(table)))
    print('seeds a point by claim: ' + ', '.join(
        f'{claim}: {n}' for claim, n in primary.seeds_needed(table).items()))
  elif argv[1] == 'plan':
    print('\n'.join(plan.lines(plan.plan(_GRID.value, _SCALE.value, _GPUS.value, _seeds()))))
  elif argv[1] == 'pack':
    packed, busy = _pack(folders.StudyFolder(_require_out()))
    print(f'packed {len(packed)} points into their results.json' +
          (f'; {len(busy)} in use, left for later: {", ".join(busy)}' if busy else ''))
  elif argv[1] == 'unseen':
    print('\n'.join(unseen.lines(unseen.shares(_DATA_DIR.value))))
  elif argv[1] == 'report':
    from jaxderain.study import report  # pylint: disable=g-import-not-at-top
    report.cli(_require_out(), test_rain=_TEST_RAIN.value,
               expected=[p.name for p in _given_grid() or ()],
               previous_rung=_PREVIOUS_RUNG.value)
  else:
    for name in _CATEGORIES.value:
      values = complexity.category_complexity(name, _DATA_DIR.value, _PATCHES.value,
                                              _PATCH_SIZE.value)
      print(json.dumps({'category': name, 'patches': len(values),
                        'patch_size': _PATCH_SIZE.value, 'mean': float(values.mean()),
                        'std': float(values.std()), 'median': float(np.median(values))}))


if __name__ == '__main__':
  cli.run(main)
