"""A study's folder and its points' folders: the one place their layout is spelled.

  OUT/points/<name>/          a point: a launch.py workdir (config.json, checkpoints/,
                              eval/<testset>.json) plus the sweep's records:
    done.json                 DoneRecord, written once the point is trained and evaluated
    failed.json               why it last could not run (until it runs again)
    sweep.log                 the output of the Ray task that ran it
  OUT/report/, OUT/report_<rain>/   the report (study/report.py)
  OUT/complexity.json         category complexity, measured once (study/complexity.py)

A point is done when its done.json reads as a DoneRecord and every result file it lists
reads back; a damaged record or result means "not done": the sweep runs the point again,
and status and report name the file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib

from jaxderain.workdir import latest_step, lock_holder

POINTS, DONE, FAILED, LOG = 'points', 'done.json', 'failed.json', 'sweep.log'
COMPLEXITY = 'complexity.json'


@dataclasses.dataclass(frozen=True)
class DoneRecord:
  """done.json: the point's grid argument, the wall time of the run that finished it
  (training from `resumed_from_step` and evaluation; None in records written before it
  was kept), its result files, and where it ran."""
  arg: str
  seconds: float
  results: tuple[str, ...]
  resumed_from_step: int | None = None
  device: str | None = None
  device_count: int | None = None
  cpu: str | None = None
  cpu_count: int | None = None
  jax: str | None = None

  @property
  def machine(self) -> dict:
    """Where it ran: the fields that are recorded."""
    return {k: v for k, v in dataclasses.asdict(self).items()
            if k in ('device', 'device_count', 'cpu', 'cpu_count', 'jax') and v is not None}

  @classmethod
  def parse(cls, data) -> DoneRecord:
    """The record in parsed JSON; ValueError naming the first bad field."""
    if not isinstance(data, dict):
      raise ValueError(f'is {type(data).__name__}, not an object')
    checks = {'arg': str, 'seconds': (int, float), 'results': list,
              'resumed_from_step': (int, type(None)), 'device': (str, type(None)),
              'device_count': (int, type(None)), 'cpu': (str, type(None)),
              'cpu_count': (int, type(None)), 'jax': (str, type(None))}
    for field, kinds in checks.items():
      required = field in ('arg', 'seconds')
      if (field in data or required) and (
          not isinstance(data.get(field), kinds) or isinstance(data.get(field), bool)):
        raise ValueError(f'its {field!r} is {data.get(field)!r}')
    if not all(isinstance(name, str) for name in data.get('results', [])):
      raise ValueError('its results are not file names')
    return cls(**{**{k: data[k] for k in checks if k in data},
                  'results': tuple(data.get('results', ()))})

  def to_json(self) -> str:
    return json.dumps({**dataclasses.asdict(self), 'results': list(self.results)})


class PointFolder:
  """OUT/points/<name>/: one point's workdir and the sweep's records of it."""

  def __init__(self, path):
    self.path = pathlib.Path(path)

  @property
  def name(self) -> str:
    return self.path.name

  @property
  def config_file(self) -> pathlib.Path:
    return self.path / 'config.json'

  @property
  def eval_dir(self) -> pathlib.Path:
    return self.path / 'eval'

  @property
  def log_file(self) -> pathlib.Path:
    return self.path / LOG

  def eval_files(self) -> list[pathlib.Path]:
    return sorted(self.eval_dir.glob('*.json'))

  def latest_step(self) -> int | None:
    return latest_step(self.path) if self.path.is_dir() else None

  def lock_holder(self) -> dict | None:
    return lock_holder(self.path) if self.path.is_dir() else None

  def done_record(self) -> DoneRecord | None:
    """The point's DoneRecord; None without done.json; ValueError naming the file when
    it cannot be read (cut short, not JSON, a field of the wrong kind)."""
    path = self.path / DONE
    if not path.is_file():
      return None
    try:
      return DoneRecord.parse(json.loads(path.read_text()))
    except (OSError, ValueError) as error:
      raise ValueError(f'{self.name}/{DONE} is damaged ({error}): the point counts as '
                       'not done and runs again') from None

  def write_done(self, record: DoneRecord) -> None:
    """Write done.json whole (a file beside it, then renamed): never half a record."""
    partial = self.path / f'.{DONE}.partial'
    partial.write_text(record.to_json())
    partial.replace(self.path / DONE)

  def is_done(self) -> bool:
    """Whether done.json reads back and so does every result file it lists (all of eval/
    for a record that lists none). A damaged record or result is not done: a warning
    names it, and the sweep evaluates the point again (retraining if its checkpoints
    are gone)."""
    try:
      record = self.done_record()
    except ValueError as error:
      logging.warning('Point %s', error)
      return False
    if record is None:
      return False
    names = list(record.results) or [f.name for f in self.eval_files()] or ['(any)']
    for name in names:
      try:
        json.loads((self.eval_dir / name).read_text())
      except (OSError, ValueError) as error:
        logging.warning('Point %s: result eval/%s is missing or unreadable (%s); evaluating '
                        'it again.', self.name, name, type(error).__name__)
        return False
    return True

  def record_failure(self, reason: str) -> None:
    """Record in failed.json why the point could not run (`failure` reads it)."""
    self.path.mkdir(parents=True, exist_ok=True)
    (self.path / FAILED).write_text(json.dumps({'reason': reason}))

  def clear_failure(self) -> None:
    (self.path / FAILED).unlink(missing_ok=True)

  def failure(self) -> str | None:
    """Why the point last failed; None if it has not failed since it last ran."""
    try:
      return str(json.loads((self.path / FAILED).read_text())['reason'])
    except (OSError, ValueError, KeyError, TypeError):
      return None


class StudyFolder:
  """OUT: a study's points, reports and caches."""

  def __init__(self, path):
    self.path = pathlib.Path(path)

  @property
  def points_dir(self) -> pathlib.Path:
    return self.path / POINTS

  def point(self, name: str) -> PointFolder:
    return PointFolder(self.points_dir / name)

  def points(self) -> list[PointFolder]:
    """Every point folder there, by name."""
    if not self.points_dir.is_dir():
      return []
    return [PointFolder(p) for p in sorted(self.points_dir.iterdir()) if p.is_dir()]

  def report_dir(self, test_rain: str = 'auto') -> pathlib.Path:
    """OUT/report for the automatic test rain, OUT/report_<rain> for a chosen one."""
    return self.path / ('report' if test_rain == 'auto' else f'report_{test_rain}')

  @property
  def complexity_file(self) -> pathlib.Path:
    return self.path / COMPLEXITY
