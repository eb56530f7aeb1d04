"""Reading a sweep's results: its points, one row per point and test set, the test rain,
the convergence gate and seed statistics per curve.

A study folder (study/folders.py) holds each point's config, done record and eval JSONs.
Choices:
- Metrics are a run's `recent` means (the last few checkpoints' evaluations) when its JSON
  has them, else the final checkpoint's values.
- One kind of test rain for every point: Rain100L's layers on held-out backgrounds
  (`<category>_rain100L`) when every evaluated point has them, else the built-in unseen
  rain (`<category>_unseen`), so that all curves compare the same rain.
- A point whose `<category>_train` PSNR does not beat the identity's (gate_psnrs) failed
  the convergence gate (`converged` False); a point without that set is unchecked (None).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import pathlib
from typing import NamedTuple

import numpy as np

from jaxderain.data.testsets import RAIN100L, TRAIN, UNSEEN, set_name, short_category
from jaxderain.errors import NotFoundError
from jaxderain.eval.metrics import METRIC_KEYS
from jaxderain.study.folders import StudyFolder

TEST_RAINS = (RAIN100L, UNSEEN)  # the test rains a report can use, preferred first
# Net removal on its own training rain below which a point that passed the gate is listed
# for the reader (the verdicts keep it): near the identity when its removal share is below
# it too (it outputs its input), else over-subtracting (it removes rain and more).
LITTLE_REMOVAL = 0.01


@dataclasses.dataclass(frozen=True)
class Row:
  """One point on one test set: the point, the test set and its metrics (a run's `recent`
  means; E_R, E_B and PSNR on the 0-255 scale), the identity's and the perfect output's
  references, the convergence gate (None: not checked), and per metric the last
  checkpoint's per-image values (the statistics' second source of noise; not written
  to results.csv)."""
  point: str
  arch: str
  category: str
  rain_range: str
  num_patches: int
  seed: int
  scale: str
  testset: str
  step: int | None
  E_R: float | None  # pylint: disable=invalid-name (the paper's symbols)
  E_B: float | None  # pylint: disable=invalid-name
  psnr: float | None
  ssim: float | None
  removal_share: float | None
  net_removal: float | None
  over_subtraction: float | None
  identity_psnr: float | None
  identity_E_B: float | None  # pylint: disable=invalid-name
  perfect_E_R: float | None  # pylint: disable=invalid-name
  converged: bool | None
  per_image: dict[str, list[float]] = dataclasses.field(repr=False, compare=False,
                                                        default_factory=dict)

  def metric(self, name: str) -> float | None:
    """A metric by name (METRIC_KEYS)."""
    return getattr(self, name)

  def key(self, fields) -> tuple:
    """The values of `fields`, e.g. ('arch', 'category')."""
    return tuple(getattr(self, f) for f in fields)

  @property
  def kept(self) -> bool:
    """The convergence gate: a point is used unless it failed it (unchecked points are
    used and listed)."""
    return self.converged is not False

  def written(self) -> dict:
    """The row as results.csv and results.json hold it (FIELDS)."""
    return {k: getattr(self, k) for k in FIELDS}


FIELDS = tuple(f.name for f in dataclasses.fields(Row) if f.name != 'per_image')
assert set(METRIC_KEYS) <= set(FIELDS)


@dataclasses.dataclass
class PointResult:
  """One grid point's workdir: its config and its eval JSONs by test set name."""
  name: str
  path: pathlib.Path
  config: dict
  evals: dict[str, dict]
  seconds: float | None = None  # training + eval wall time, from the sweep's done.json
  resumed_from_step: int | None = None  # the step the timed run started from (done.json;
  # 0: trained from scratch; None: a done.json written before it recorded this)
  machine: dict = dataclasses.field(default_factory=dict)  # where it ran, from done.json
  unreadable: list[str] = dataclasses.field(default_factory=list)  # eval files left out

  @property
  def category(self) -> str:
    return short_category(self.config.get('category', ''))

  @property
  def converged(self) -> bool | None:
    """Whether the train set's PSNR beats the identity's; None without that set."""
    result = self.evals.get(set_name(self.category, TRAIN))
    if result is None:
      return None
    psnr, identity_psnr = gate_psnrs(result)
    return psnr > identity_psnr

  def gate(self) -> dict:
    """{'point', 'psnr', 'identity_psnr', 'net_removal'} of the train set."""
    result = self.evals[set_name(self.category, TRAIN)]
    psnr, identity_psnr = gate_psnrs(result)
    return {'point': self.name, 'psnr': psnr, 'identity_psnr': identity_psnr,
            'net_removal': _metrics(result)['net_removal']}

  @property
  def little_removal(self) -> str | None:
    """Why the gate kept it although its net removal of its own training rain is below
    LITTLE_REMOVAL: 'near the identity' (it outputs its input, up to rounding) or
    'over-subtracting' (it removes rain but darkens the rain pixels below the clean
    image); None when its net removal is not that small or it failed the gate."""
    if not self.converged:  # also without a train set
      return None
    metrics = _metrics(self.evals[set_name(self.category, TRAIN)])
    if metrics['net_removal'] is None or metrics['net_removal'] >= LITTLE_REMOVAL:
      return None
    share = metrics['removal_share']
    return 'near the identity' if share is None or share < LITTLE_REMOVAL else 'over-subtracting'


def gate_psnrs(result: dict) -> tuple[float, float]:
  """(model, identity) mean PSNR on a train set for the convergence gate: the last
  checkpoint's, over the images that drew rain (on an image without rain the identity's
  PSNR is infinite). One rule for every point; a JSON without per-image values falls back
  to its (recent) means."""
  rows = [r for r in result.get('per_image', []) if math.isfinite(r['identity_psnr'])]
  if not rows:
    return _metrics(result)['psnr'], result['reference']['identity']['psnr']
  return (float(np.mean([r['psnr'] for r in rows])),
          float(np.mean([r['identity_psnr'] for r in rows])))


def read_json(path: pathlib.Path):
  """A JSON file's content; ValueError naming the file when it cannot be read."""
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as error:  # e.g. a file the sweep is still writing
    raise ValueError(f'unreadable {path.parent.name}/{path.name} ({error})') from None


def load_points(out_dir) -> tuple[list[PointResult], list[dict]]:
  """Evaluated points of the study folder OUT, and the others as {'point', 'reason'}. An
  unreadable eval file (e.g. cut short) is left out of its point, which keeps its other
  results and names the file in `unreadable`; a damaged done record leaves the point
  out, named."""
  study = StudyFolder(out_dir)
  if not study.points_dir.is_dir():
    raise NotFoundError(f'{study.points_dir} does not exist: pass the --out folder of a '
                        'study sweep (it holds points/<name>/config.json).')
  points, not_run = [], []
  for folder in study.points():
    if not folder.config_file.is_file():
      not_run.append({'point': folder.name, 'reason': 'no config.json'})
      continue
    if holder := folder.lock_holder():  # its results may be half written
      not_run.append({'point': folder.name, 'reason': f'still running ({holder.get("purpose")} '
                      f'by PID {holder.get("pid")} on {holder.get("host")})'})
      continue
    try:
      config = read_json(folder.config_file)
      if not isinstance(config, dict):
        raise ValueError(f'unreadable {folder.name}/config.json (not an object)')
      done = folder.done_record()
    except ValueError as error:
      not_run.append({'point': folder.name, 'reason': str(error)})
      continue
    evals, unreadable = folder.read_results()
    if evals:
      points.append(PointResult(folder.name, folder.path, config, evals,
                                done.seconds if done else None,
                                done.resumed_from_step if done else None,
                                done.machine if done else {}, unreadable))
    else:
      reason = 'no eval results' + (f' (unreadable: {"; ".join(unreadable)})'
                                    if unreadable else '')
      not_run.append({'point': folder.name, 'reason': reason})
  return points, not_run


def _metrics(result: dict) -> dict:
  """The metrics of one eval JSON: its `recent` means when present."""
  recent = result.get('recent') or {}
  return {k: recent.get(k, result.get(k)) for k in METRIC_KEYS}


def result_rows(points: list[PointResult]) -> list[Row]:
  """One Row per point and test set."""
  rows = []
  for point in points:
    config, converged = point.config, point.converged
    for testset, result in sorted(point.evals.items()):
      reference = result.get('reference', {})
      rows.append(Row(
          point=point.name, arch=config.get('arch'), category=point.category,
          rain_range=config.get('rain_range'), num_patches=config.get('num_patches'),
          seed=config.get('seed'), scale=config.get('scale'), testset=testset,
          step=result.get('step'), **_metrics(result),
          identity_psnr=reference.get('identity', {}).get('psnr'),
          identity_E_B=reference.get('identity', {}).get('E_B'),
          perfect_E_R=reference.get('perfect', {}).get('E_R'),
          converged=converged, per_image=_per_image(result)))
  return rows


def _per_image(result: dict) -> dict[str, list[float]]:
  """{metric: per-image values of the last checkpoint} of one eval JSON (NaN where an
  image has none, e.g. E_R on an image without rain pixels)."""
  images = result.get('per_image') or []
  return {k: [math.nan if r.get(k) is None else r[k] for r in images] for k in METRIC_KEYS}


def choose_test_rain(points: list[PointResult]) -> str:
  """RAIN100L when every point has `<category>_rain100L`, else UNSEEN."""
  if points and all(set_name(p.category, RAIN100L) in p.evals for p in points):
    return RAIN100L
  return UNSEEN


def split_converged(rows: list[Row]) -> tuple[list[Row], list[str]]:
  """(rows of points the gate keeps, sorted names of those that failed it)."""
  return [r for r in rows if r.kept], sorted({r.point for r in rows if not r.kept})


class Level(NamedTuple):
  """A metric at one N, over seeds."""
  n: int
  mean: float
  low: float
  high: float
  seeds: int


def curves(rows: list[Row], metric: str, keys=('arch', 'category', 'rain_range'),
           x=lambda row: row.num_patches):
  """{key values: [Level] by ascending x (N by default)}: the metric's seed statistics
  per group."""
  values = collections.defaultdict(lambda: collections.defaultdict(list))
  for row in rows:
    value = row.metric(metric)
    if value is not None and math.isfinite(value):
      values[row.key(keys)][x(row)].append(value)
  return {key: [Level(n, float(np.mean(v)), min(v), max(v), len(v))
                for n, v in sorted(by_n.items())]
          for key, by_n in sorted(values.items())}


def reference_range(rows: list[Row]) -> str:
  """medium when present, else the most common rain range of the rows."""
  counts = collections.Counter(r.rain_range for r in rows)
  if 'medium' in counts or not counts:
    return 'medium'
  return counts.most_common(1)[0][0]


def order_key(value, order=()) -> tuple:
  """Sort key: position in `order` first, then by name."""
  return (order.index(value) if value in order else len(order), str(value))
