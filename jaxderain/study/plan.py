"""What a grid costs before it runs: points, steps, device-hours and wall time on N devices.

Step times come from the benchmark files of benchmarks/results/ (measured there, never
here; copied into the package's step_times/ by `python -m benchmarks.step_times`), each
estimate naming the figure it uses:
- on H100 GPUs: `vs_torch_h100.json` (the jaxderain train step on one H100): config `a`
  is the paper's ResNet step (64 x 16, batch 16, 128 x 128), configs `cpu`, `unet` and
  `swinir` the cpu presets' steps; on this project's 2-core CPU: `models.json`'s
  `cpu_train_step_s` (the cpu presets) and `vs_torch.json`'s config `a` (paper ResNet).
- Where no step of that model at that scale was measured, the time is an ESTIMATE: the
  measured ResNet step of that scale and device times the ratio of the two models' times
  measured on the CPU (the cpu presets' train steps, or, for paper models, one forward
  pass on a 480 x 320 image, `models.json`).
Counted: training steps only; start-up, compilation and the evaluation of each point are
left out. Wall time: points placed longest first on the device free soonest, one point
per device at a time.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import pathlib

from jaxderain.errors import ConfigError, DataError
from jaxderain.study import grids, sweep

STEP_TIMES = pathlib.Path(__file__).with_name('step_times')  # package data
STEP_TIME_FILES = ('models.json', 'vs_torch.json', 'vs_torch_h100.json')
GPU, CPU = 'H100', '2-core CPU'
# The scales whose models and steps are the cpu presets' (configs/grid.py MODELS).
CPU_PRESET_SCALES = ('cpu', 'cpu-long')
PLANNED_SCALES = ('paper', *CPU_PRESET_SCALES)


@dataclasses.dataclass(frozen=True)
class StepTime:
  """Seconds per train step and where the figure comes from."""
  seconds: float
  source: str
  estimate: bool


def _records(name: str, results: pathlib.Path) -> list[dict]:
  path = results / name
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as error:
    raise DataError(f'{path} cannot be read ({error}): copy it from benchmarks/results/ '
                    '(python -m benchmarks.step_times) or reinstall jaxderain.') from None


def step_time(arch: str, scale: str, device: str, results=STEP_TIMES) -> StepTime:
  """The train-step time of `arch` at `scale` on `device` (GPU or CPU)."""
  results = pathlib.Path(results)
  models = {r['arch']: r for r in _records('models.json', results)}
  cpu_preset = scale in CPU_PRESET_SCALES
  if device == GPU:
    measured = {r['config']: r['jax_s'] for r in _records('vs_torch_h100.json', results)}
    name, reference = (arch if arch != 'resnet' else 'cpu', 'cpu') if cpu_preset else (
        'a' if arch == 'resnet' else None, 'a')
    where = 'vs_torch_h100.json'
  else:
    measured = ({a: r['cpu_train_step_s'] for a, r in models.items()} if cpu_preset else
                {r['config']: r['jax_s'] for r in _records('vs_torch.json', results)})
    name, reference = (arch, 'resnet') if cpu_preset else ('a' if arch == 'resnet' else None,
                                                          'a')
    where = 'models.json' if cpu_preset else 'vs_torch.json'
  if name in measured:
    return StepTime(measured[name], f'{where} [{name}]', False)
  ratio_key = 'cpu_train_step_s' if cpu_preset else 'forward_480x320_s'
  ratio = models[arch][ratio_key] / models['resnet'][ratio_key]
  return StepTime(measured[reference] * ratio,
                  f'{where} [{reference}] x {ratio:.2f} (models.json {ratio_key}, '
                  f'{arch} / resnet)', True)


@dataclasses.dataclass
class Plan:
  """The cost of a grid: rows per architecture and the totals."""
  grid: str
  scale: str
  devices: int
  device: str
  rows: list[dict]
  points: int
  steps: int
  device_hours: float
  wall_hours: float


def wall_hours(point_hours: list[float], devices: int) -> float:
  """The time to run every point, longest first, each on the device free soonest."""
  free_at = [0.0] * max(1, devices)
  for hours in sorted(point_hours, reverse=True):
    heapq.heapreplace(free_at, free_at[0] + hours)
  return max(free_at)


def plan(grid: str, scale: str, gpus: int, seeds=None, results=STEP_TIMES) -> Plan:
  """The cost of running `grid` at `scale` on `gpus` H100s (0: this project's CPU)."""
  if scale not in PLANNED_SCALES:
    raise ConfigError(f'no step times are measured for scale {scale!r}: plan one of '
                      f'{", ".join(PLANNED_SCALES)}.')
  if gpus < 0:
    raise ConfigError(f'--gpus must be 0 (this CPU) or more, got {gpus}.')
  device = GPU if gpus > 0 else CPU
  points = grids.grid_points(grid, scale, seeds)
  per_arch, point_hours, timings = {}, [], {}
  for point in points:
    config = sweep.point_config(point)
    if config.arch not in timings:  # the benchmark files are read once per architecture
      timings[config.arch] = step_time(config.arch, scale, device, results)
    timing = timings[config.arch]
    hours = config.total_steps * timing.seconds / 3600
    point_hours.append(hours)
    row = per_arch.setdefault(config.arch, {'arch': config.arch, 'runs': 0, 'steps': 0,
                                            'step_s': timing.seconds, 'source': timing.source,
                                            'estimate': timing.estimate, 'hours': 0.0})
    row['runs'] += 1
    row['steps'] += config.total_steps
    row['hours'] += hours
  rows = list(per_arch.values())
  return Plan(grid, scale, max(gpus, 1), device, rows, len(points),
              sum(r['steps'] for r in rows), sum(point_hours),
              wall_hours(point_hours, max(gpus, 1)))


def lines(found: Plan) -> list[str]:
  """The plan as a text table."""
  where = f'{found.devices} x {found.device}' if found.device == GPU else found.device
  out = [f'grid {found.grid} at scale {found.scale} on {where}: {found.points} points, '
         f'{found.steps:,} train steps (training only; start-up and evaluation not counted)',
         f'{"arch":<8}{"points":>7}{"steps":>14}{"s/step":>10}{"device-h":>10}  source']
  for row in found.rows:
    mark = 'ESTIMATE ' if row['estimate'] else 'measured '
    out.append(f'{row["arch"]:<8}{row["runs"]:>7}{row["steps"]:>14,}{row["step_s"]:>10.4f}'
               f'{row["hours"]:>10.1f}  {mark}{row["source"]}')
  out.append(f'total: {found.device_hours:.1f} device-hours; wall time on {where}: '
             f'{found.wall_hours:.1f} h')
  return out
