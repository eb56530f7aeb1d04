"""How unseen a test rain is, measured: the share of its streaks outside each training range.

Each streak of a test set's rain layers is measured (rain/stats.streak_shapes: angle,
length, width) and compared with the central 98% of the streaks of 64 layers of each
Table 1 training range, measured the same way at the test image size (so the comparison
carries the measurement's own blur and bias on both sides). A test rain is *unseen* by a
range when at least half of its streaks fall outside it on some axis
(UNSEEN_SHARE); the training rain itself scores about 0.05 against its own range.

  python -m jaxderain.study unseen --data_dir=../shared/data   # the table
"""

from __future__ import annotations

import jax
import numpy as np

from jaxderain import data, rain
from jaxderain.configs import checks, grid
from jaxderain.rain import stats

UNSEEN_SHARE = 0.5  # share of streaks outside a range above which a rain is unseen by it
TRAINING_LAYERS = 64
# The test sets measured: the two test rains of the study, Rain100L as given, and the
# angle-shifted rains.
MEASURED = ('unseen', 'rain100L', *[f'angle{a}' for a in range(0, 100, 10)])


def training_ranges(size: int, layers: int = TRAINING_LAYERS,
                    seed: int = 0) -> dict[str, np.ndarray]:
  """{range: measured_range bounds} from `layers` layers of size x size."""
  bounds = {}
  for name in rain.RAIN_RANGES:
    drawn = np.asarray(rain.synthesize(jax.random.key(seed), layers, size, size, name))
    bounds[name] = stats.measured_range(np.concatenate(
        [stats.streak_shapes(layer) for layer in drawn]))
  return bounds


def shares(data_dir: str = '', scale: str = 'cpu',
           training_layers: int = TRAINING_LAYERS) -> dict[str, dict]:
  """{test set: {'streaks': K, range: share_outside(...)}} for the `natural` test sets a
  study point at `scale` evaluates on (Rain100L's only with data_dir)."""
  config = grid.get_config(f'resnet,medium,8,scale={scale}')
  config.data_dir = data_dir
  config.eval.rain_shifts = ('angle',)
  bounds = training_ranges(config.eval.image_size, training_layers)
  table = {}
  resolved = checks.resolve(config)
  for test_set in data.point_test_sets(resolved.backgrounds, resolved.tests,
                                       resolved.rain_shifts, resolved.rain_range):
    if not any(test_set.name in (f'natural_{m}', m) for m in MEASURED):
      continue
    measured = np.concatenate([stats.streak_shapes(layer) for layer in test_set.rain_layer])
    table[test_set.name] = {'streaks': len(measured), **{
        name: stats.share_outside(measured, b) for name, b in bounds.items()}}
  return table


def lines(table: dict[str, dict]) -> list[str]:
  """The table as markdown: per test set and training range, the share of streaks
  outside on any axis (angle / length / width), unseen ones in bold."""
  head = ['| test set | streaks | ' + ' | '.join(f'outside {r}' for r in rain.RAIN_RANGES) +
          ' |', '|---|---:|' + '---|' * len(rain.RAIN_RANGES)]
  rows = []
  for name, row in table.items():
    cells = []
    for r in rain.RAIN_RANGES:
      share = row[r]
      text = (f'{share["any"]:.2f} ({share["angle"]:.2f} / {share["length"]:.2f} / '
              f'{share["width"]:.2f})')
      cells.append(f'**{text}**' if share['any'] >= UNSEEN_SHARE else text)
    rows.append(f'| {name} | {row["streaks"]} | ' + ' | '.join(cells) + ' |')
  return head + rows
