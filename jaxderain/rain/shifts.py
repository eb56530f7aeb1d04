"""Test rain that moves step by step away from the training rain, along one axis at a time.

Every shifted rain is the small range's shape (width 5, length 30-31 px, |theta| <= 5 deg,
quantity 200-300, the training Levels), which lies inside all three Table 1 ranges, with
one parameter moved:
- angle: |theta| in a 5-degree band around 0, 10, ..., 90 degrees from vertical (either
  side), so the offset beyond a training range's largest angle grows in 10-degree steps;
- length: streaks of L in (L, L + 1) px for L in LENGTHS, shorter and longer than trained;
- width: one Gaussian width w in WIDTHS px, thinner and wider than trained.
The study evaluates each on the same held-out backgrounds and plots removal against the
distance from the training range (`offset`).
"""

from __future__ import annotations

import dataclasses

from jaxderain.rain.streaks import RainRange

AXES = ('angle', 'length', 'width')
ANGLES = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90)
LENGTHS = (4, 8, 15, 30, 50, 70, 90, 120)
WIDTHS = (1, 3, 5, 7, 9, 11, 13, 15)
BASE = RainRange(quantity=(200, 300), widths=(5,), length=(30, 31), angle=(-5, 5))


@dataclasses.dataclass(frozen=True)
class ShiftedRain:
  """One test rain of the family: axis (AXES), its value on that axis, its RainRange."""
  axis: str
  value: int
  rain_range: RainRange

  @property
  def name(self) -> str:
    """The test set suffix, e.g. 'angle40'."""
    return f'{self.axis}{self.value}'


def _shifted(axis: str, value: int) -> RainRange:
  if axis == 'angle':
    band = (max(value - 2.5, 0.0), min(value + 2.5, 90.0))
    return dataclasses.replace(BASE, angle=band, mirrored=True)
  if axis == 'length':
    return dataclasses.replace(BASE, length=(value, value + 1))
  return dataclasses.replace(BASE, widths=(value,))


def family(axes=AXES) -> list[ShiftedRain]:
  """The shifted rains of the named axes, in AXES order and ascending value."""
  unknown = set(axes) - set(AXES)
  if unknown:
    raise ValueError(f'Unknown rain shift axis {sorted(unknown)}: choose from '
                     f'{", ".join(AXES)}.')
  values = {'angle': ANGLES, 'length': LENGTHS, 'width': WIDTHS}
  return [ShiftedRain(axis, v, _shifted(axis, v)) for axis in AXES if axis in axes
          for v in values[axis]]


def parse(name: str) -> tuple[str, int] | None:
  """'angle40' -> ('angle', 40); None for a name that is not a shifted rain."""
  for axis in AXES:
    if name.startswith(axis) and name[len(axis):].isdigit():
      return axis, int(name[len(axis):])
  return None


def offset(axis: str, value: float, training: RainRange) -> float:
  """Signed distance of `value` beyond the training range on `axis` (negative: inside):
  degrees beyond its largest |theta|; px beyond its nearer length or width bound."""
  if axis == 'angle':
    edge = max(abs(a) for a in training.angle)
    return abs(value) - edge
  low, high = ((min(training.length), max(training.length)) if axis == 'length'
               else (min(training.widths), max(training.widths)))
  return max(low - value, value - high)
