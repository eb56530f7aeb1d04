"""A study's folder and its points' folders: the one place their layout is spelled.

  OUT/points/<name>/          a point: a launch.py workdir (config.json, checkpoints/,
                              eval/<testset>.json) plus the sweep's records:
    done.json                 DoneRecord, written once the point is trained and evaluated
    results.json              every eval/<testset>.json of the point in one compact file
                              (per-image values by column): what a study commits
    failed.json               why it last could not run (until it runs again)
    sweep.log                 the output of the Ray task that ran it
  OUT/report/, OUT/report_<rain>/   the report (study/report.py)
  OUT/complexity.json         category complexity, measured once (study/complexity.py)

A point is done when its done.json reads as a DoneRecord and every result it lists reads
back (from results.json, else from eval/); a damaged record or result means "not done":
the sweep runs the point again, and status and report name the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pathlib

from jaxderain.eval.metrics import METRIC_KEYS
from jaxderain.workdir import CONFIG_NAME, EVAL, hold, latest_step, lock_holder

POINTS, DONE, FAILED, LOG = 'points', 'done.json', 'failed.json', 'sweep.log'
RESULTS = 'results.json'
RESULTS_FORMAT = 1
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
    return self.path / CONFIG_NAME

  @property
  def eval_dir(self) -> pathlib.Path:
    return self.path / EVAL

  @property
  def log_file(self) -> pathlib.Path:
    return self.path / LOG

  @property
  def results_file(self) -> pathlib.Path:
    return self.path / RESULTS

  def eval_files(self) -> list[pathlib.Path]:
    return sorted(self.eval_dir.glob('*.json'))

  def read_results(self) -> tuple[dict[str, dict], list[str]]:
    """({test set: its eval JSON}, unreadable files): from results.json when the point
    has one, else from eval/*.json (a file cut short is left out and named)."""
    if self.results_file.is_file():
      try:
        found = _unpacked(json.loads(self.results_file.read_text()))
      except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return {}, [f'{RESULTS} ({error})']
      results, unreadable = {}, []
      for name, data in found.items():
        try:
          results[name] = checked_eval_record(data)
        except ValueError as error:
          unreadable.append(f'{RESULTS} set {name} ({error})')
      return results, unreadable
    return self._read_eval_files()

  def _read_eval_files(self) -> tuple[dict[str, dict], list[str]]:
    """({test set: its checked eval/<set>.json}, the files that do not read, named)."""
    results, unreadable = {}, []
    for file in self.eval_files():
      try:
        results[file.stem] = checked_eval_record(json.loads(file.read_text()))
      except (OSError, ValueError) as error:
        unreadable.append(f'eval/{file.name} ({error})')
    return results, unreadable

  def pack(self) -> bool:
    """Write results.json from eval/*.json (whole, or not at all); False when there is
    nothing to pack or a file cannot be read."""
    results, unreadable = self._read_eval_files()
    if not results or unreadable:
      return False
    partial = self.path / f'.{RESULTS}.partial'
    partial.write_text(json.dumps(_packed(results), separators=(',', ':')))
    partial.replace(self.results_file)
    return True

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

  def done_record_or_none(self) -> DoneRecord | None:
    """The done record; None without one or when it is damaged."""
    try:
      return self.done_record()
    except ValueError:
      return None

  @contextlib.contextmanager
  def running(self, purpose: str):
    """Hold the point's lock for the block (`purpose` names it to others); a point that
    failed before runs again now (its failure record is removed)."""
    with hold(self.path, purpose, '--out'):
      (self.path / FAILED).unlink(missing_ok=True)
      yield

  def finish(self, record: DoneRecord) -> None:
    """Pack the eval files (results.json), then write the done record; call it holding
    the point's lock (`running`)."""
    self.pack()
    self.write_done(record)

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
    results, unreadable = self.read_results()
    missing = [n for n in record.results if n.removesuffix('.json') not in results]
    if unreadable or missing or not results:
      named = '; '.join(unreadable + [f'{n} missing' for n in missing]) or 'no results'
      logging.warning('Point %s: %s; evaluating it again.', self.name, named)
      return False
    return True

  def record_failure(self, reason: str) -> None:
    """Record in failed.json why the point could not run (`failure` reads it)."""
    self.path.mkdir(parents=True, exist_ok=True)
    (self.path / FAILED).write_text(json.dumps({'reason': reason}))

  def failure(self) -> str | None:
    """Why the point last failed; None if it has not failed since it last ran."""
    try:
      return str(json.loads((self.path / FAILED).read_text())['reason'])
    except (OSError, ValueError, KeyError, TypeError):
      return None


def checked_eval_record(data) -> dict:
  """An eval JSON (eval/<testset>.json, or one set of results.json) as read, after the
  checks its readers rely on; ValueError naming the first bad field. Its metrics (top
  level and `recent`) and per-image values are numbers or null, `step` an integer, and
  `reference.identity.psnr` a number."""
  def number_or_null(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))

  if not isinstance(data, dict):
    raise ValueError(f'is {type(data).__name__}, not an object')
  if not isinstance(data.get('step'), int) or isinstance(data.get('step'), bool):
    raise ValueError(f'its step is {data.get("step")!r}')
  recent = data.get('recent', {})
  if not isinstance(recent, dict):
    raise ValueError(f'its recent is {recent!r}')
  for where, values in (('', data), ('recent.', recent)):
    for key in METRIC_KEYS:
      if not number_or_null(values.get(key)):
        raise ValueError(f'its {where}{key} is {values.get(key)!r}')
  identity = data.get('reference')
  identity = identity.get('identity') if isinstance(identity, dict) else None
  if not isinstance(identity, dict) or not number_or_null(identity.get('psnr')):
    raise ValueError('its reference.identity.psnr is missing or not a number')
  rows = data.get('per_image', [])
  if not isinstance(rows, list) or not all(
      isinstance(row, dict) and all(map(number_or_null, row.values())) for row in rows):
    raise ValueError('its per_image is not a list of rows of numbers')
  return data


def _packed(results: dict[str, dict]) -> dict:
  """results.json: each test set's eval JSON with its per-image rows as columns."""
  sets = {}
  for name, result in sorted(results.items()):
    rows = result.get('per_image') or []
    columns = {k: [row.get(k) for row in rows] for k in (rows[0] if rows else {})}
    sets[name] = {**result, 'per_image': columns}
  return {'format': RESULTS_FORMAT, 'sets': sets}


def _unpacked(packed: dict) -> dict[str, dict]:
  """The eval JSONs results.json holds, per-image values back as rows."""
  if packed.get('format') != RESULTS_FORMAT:
    raise ValueError(f'unknown format {packed.get("format")!r}')
  results = {}
  for name, result in packed['sets'].items():
    columns = result['per_image']
    count = len(next(iter(columns.values()), []))
    rows = [{k: values[i] for k, values in columns.items()} for i in range(count)]
    results[name] = {**result, 'per_image': rows}
  return results


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
