"""Run a grid as one resumable sweep: every point trained and evaluated in turn.

Each point lives in its point folder (study/folders.py: a launch.py workdir). A point
counts as done when its done record (written after its evaluation, with the wall time,
the machine and the result files) and those files read back; a point that cannot run
records why until it runs again. So a killed sweep resumes where it stopped: done points
are skipped, a point killed mid-training resumes from its latest checkpoint, and a point
with a damaged record or result is evaluated again. A study kept in the repository (docs/studies/<rung>/) commits each done
point's config.json, done.json and eval/*.json (not its checkpoints, see .gitignore):
`run` on another machine skips them and `report` rebuilds everything from them.

Points run sequentially by default (on a 2-core CPU several models in one vmapped step
measured 3-5x slower than one after another). With `together=K`, up to K fresh points
that can share one program (the config's shared fields, configs/grid.py) are trained by
one vmapped step,
then evaluated one by one: an option for small models on a GPU (H100, K = 4-16:
cpu-scale ResNet 1.2-2.2x faster, paper-scale 3.5-6.6x slower).
"""

from __future__ import annotations

import logging
import os
import platform
import shlex
import time

import jax

from jaxderain import experiment
from jaxderain.configs import grid as grid_config
from jaxderain.errors import ConfigError, UserError
from jaxderain.study.folders import DoneRecord, StudyFolder
from jaxderain.study.grids import Point

# Every study point evaluates its last three checkpoints, saved at 80, 90 and 100% of
# training, so metrics are means over the end of training rather than one checkpoint.
AVERAGED_CHECKPOINTS = 3


# The config fields a study sets on every point beside its grid's own (`point_config`):
# the checkpoint cadence that AVERAGED_CHECKPOINTS needs, fields that leave training
# alone, so a point trained by launch.py alone resumes under the study.
CADENCE = ('eval.average_last', 'keep_checkpoints', 'checkpoint_every')


def point_config(point: Point):
  """The ConfigDict of a point: its grid config, the CADENCE and its grid's overrides."""
  config = grid_config.get_config(point.arg)
  cadence = (AVERAGED_CHECKPOINTS, max(config.keep_checkpoints, AVERAGED_CHECKPOINTS),
             max(1, config.total_steps // 10))
  for field, value in [*zip(CADENCE, cadence), *point.overrides]:
    grid_config.SCHEMA.field(field).write(config, value)
  return config


def overrides(point: Point) -> dict:
  """The fields `point_config` sets on the grid config of `point`, with their values."""
  config = point_config(point)
  return {field: grid_config.SCHEMA.field(field).read(config)
          for field in [*CADENCE, *dict(point.overrides)]}


def commands(points: list[Point], out) -> list[str]:
  """One shell line per point (train, then eval) for a cluster scheduler."""
  lines = []
  for point in points:
    flags = [f'--config=configs/grid.py:{point.arg}',
             f'--workdir={StudyFolder(out).point(point.name).path}']
    flags += [f'--config.{field}={value!r}' if isinstance(value, tuple)
              else f'--config.{field}={value}' for field, value in overrides(point).items()]
    line = ' '.join(shlex.quote(f) for f in flags)
    lines.append(f'python launch.py {line} && python launch.py {line} --mode=eval')
  return lines


def groups(points: list[Point], out, together: int) -> list[list[Point]]:
  """The points in training order: groups of up to `together` points that can train in
  one program (equal grid.SCHEMA.together_key) and have no checkpoint yet, then each
  other point alone."""
  if together <= 1:
    return [[point] for point in points]
  compatible, alone = {}, []
  for point in points:
    try:
      key = grid_config.SCHEMA.together_key(point_config(point))
    except ConfigError:  # a bad grid point: reported when it runs alone
      alone.append([point])
      continue
    if StudyFolder(out).point(point.name).latest_step() is not None:
      alone.append([point])
    else:
      compatible.setdefault(key, []).append(point)
  return [members[i:i + together] for members in compatible.values()
          for i in range(0, len(members), together)] + alone


def train_group(group: list[Point], out) -> float:
  """Train a group of points together (experiment.train_together); returns the seconds
  it took. If it fails with a UserError, a warning says why and its points then train
  one by one, resuming from the group's last checkpoints; any other error propagates."""
  start = time.time()
  try:
    experiment.train_together([point_config(p) for p in group],
                              [str(StudyFolder(out).point(p.name).path) for p in group])
  except UserError as error:
    logging.warning('Training %s together failed (%s); training them one by one.',
                    ', '.join(p.name for p in group), error)
  return time.time() - start


def run(points: list[Point], out, together: int = 1) -> dict:
  """Train and evaluate every point not done yet; returns {'done', 'skipped', 'failed'}.

  A point that cannot run (a UserError: e.g. a category that is not available, a
  diverging loss) is reported and the sweep goes on; its reason is in its failed.json
  (`record_failure`). Any other error is a bug: it stops the sweep with its traceback. SIGTERM
  checkpoints the running point(s) and raises loop.Preempted; rerunning resumes there.
  together: train up to this many compatible fresh points in one vmapped program (see
  `groups`); their done.json seconds include an equal share of the group's training."""
  study = StudyFolder(out)
  todo = [p for p in points if not study.point(p.name).is_done()]
  logging.info('Sweep: %d points, %d already done, %d to run.', len(points),
               len(points) - len(todo), len(todo))
  failures, finished, started, index = {}, 0, time.time(), -1
  for group in groups(todo, out, together):
    first_steps = {p.name: study.point(p.name).latest_step() or 0 for p in group}
    shared_seconds = train_group(group, out) / len(group) if len(group) > 1 else 0.0
    for point in group:
      index += 1
      if not _run_point(point, study, shared_seconds, first_steps[point.name], failures):
        continue
      finished += 1
      elapsed = time.time() - started
      eta = elapsed / (index + 1) * (len(todo) - index - 1)
      logging.info('Sweep: %d/%d points done this run (%s), %.0f s elapsed, ETA %.0f s.',
                   index + 1, len(todo), point.name, elapsed, eta)
  return {'done': finished, 'skipped': len(points) - len(todo), 'failed': failures}


def _run_point(point: Point, study: StudyFolder, shared_seconds: float, first_step: int,
               failures: dict) -> bool:
  """Train (or finish training) and evaluate one point, then write its done record,
  whose seconds time this run from `first_step` (the checkpoint it resumed from, 0 if
  fresh); False, with the reason in `failures`, if it cannot run (a UserError)."""
  point_start = time.time()
  try:
    folder = study.point(point.name)
    with folder.running('study point (training, evaluation, records)'):
      try:
        config = point_config(point)
        experiment.train(config, str(folder.path))
        results = experiment.evaluate(config, str(folder.path))
      except UserError as error:
        folder.record_failure(str(error))
        raise
      folder.finish(DoneRecord(
          arg=point.arg, seconds=time.time() - point_start + shared_seconds,
          resumed_from_step=first_step,
          results=tuple(sorted(f'{name}.json' for name in results)), **machine()))
  except UserError as error:
    failures[point.name] = str(error)
    logging.error('Point %s failed: %s', point.name, error)
    return False
  return True


def machine() -> dict:
  """Where a point ran: the accelerator (or CPU) kind, the host CPU, jax's version."""
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as info:
      cpu = next(l.split(':', 1)[1].strip() for l in info if l.startswith('model name'))
  except (OSError, StopIteration):
    pass
  return {'device': jax.devices()[0].device_kind, 'device_count': jax.device_count(),
          'cpu': cpu, 'cpu_count': os.cpu_count(), 'jax': jax.__version__}
