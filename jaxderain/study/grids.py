"""The paper's grid and its named subsets, as lists of grid points.

A grid point is exactly one `launch.py` run: `configs/grid.py:ARG` plus a few config
overrides that every point of a study shares, so any scheduler can run points as
independent jobs.
"""

from __future__ import annotations

import dataclasses
import json
import re

from jaxderain.errors import ConfigError
from jaxderain.rain import RAIN_RANGES
from jaxderain.study import primary

NUM_PATCHES = (8, 16, 32, 64, 128, 256, 512, 1024, 30000)
# The paper's categories; `natural` stands in for DIV2K where DIV2K is not prepared.
CATEGORIES = ('celeba', 'natural', 'manga109', 'urban100')
FAMILIES = ('resnet', 'unet', 'swinir')
# Table 2's objectives: (N, rain range).
TABLE2_OBJECTIVES = ((30000, 'medium'), (64, 'medium'), (512, 'large'), (256, 'large'),
                     (128, 'large'))
CLAIMS_PATCHES = (8, 32, 128, 512, 4096)
FEW_MANY_PATCHES = (8, 128, 4096)
# Table 2 at the cpu rung: the baseline and two objectives of few backgrounds. resnet's
# baseline and (512, large) come from the claims and claim2 grids.
TABLE2_CPU_OBJECTIVES = ((4096, 'medium'), (64, 'medium'), (512, 'large'))
TESTED_ON_NATURAL = (('eval.extra_categories', ('natural',)),)


@dataclasses.dataclass(frozen=True)
class Point:
  """One grid point: its configs/grid.py argument and config overrides."""
  arg: str
  overrides: tuple[tuple[str, object], ...] = ()

  @property
  def name(self) -> str:
    """A folder name that says what the point is."""
    return re.sub(r'[^A-Za-z0-9.-]+', '_', self.arg.replace('=', '-')).strip('_')


def _fig4_args():
  return [f'{arch},medium,{n},category={c}' for arch in FAMILIES for c in CATEGORIES
          for n in NUM_PATCHES]


# Each grid: (its arguments, its default seeds, overrides shared by its points).
GRIDS = {
    'fig4': (_fig4_args, (0,), ()),
    'fig5': (lambda: [f'resnet,{r},{n}' for r in RAIN_RANGES for n in NUM_PATCHES], (0,), ()),
    'fig7': (_fig4_args, (0,), ()),
    'fig10': (_fig4_args, (0,), (('eval.extra_categories', ('natural',)),)),
    'table2': (lambda: [f'{arch},{r},{n}' for arch in ('resnet', 'spdnet', 'rcdnet')
                        for n, r in TABLE2_OBJECTIVES], (0,), ()),
    'claims': (lambda: [f'resnet,medium,{n},category={c}' for c in ('natural', 'urban100')
                        for n in CLAIMS_PATCHES], (0, 1, 2), ()),
    'smoke': (lambda: [f'{arch},medium,{n}' for arch in ('resnet', 'unet') for n in (8, 64)],
              (0,), ()),
    # The study's parts, each a grid of its own; `study` runs them all in this order.
    'claim2': (lambda: [f'resnet,{r},{n}' for r in ('small', 'large')
                        for n in CLAIMS_PATCHES], (0, 1), ()),
    'families': (lambda: [f'unet,medium,{n}' for n in CLAIMS_PATCHES] +
                 [f'swinir,medium,{n}' for n in FEW_MANY_PATCHES], (0, 1), ()),
    'categories': (lambda: [f'resnet,medium,{n},category={c}' for c in ('celeba', 'manga109')
                            for n in FEW_MANY_PATCHES], (0,),
                   TESTED_ON_NATURAL + (('upscale_small_images', True),)),
    'table2_resnet': (lambda: ['resnet,medium,64'], (0, 1), ()),
    # The two slow models run one seed.
    'table2_slow': (lambda: [f'{arch},{r},{n}' for arch in ('spdnet', 'rcdnet')
                             for n, r in TABLE2_CPU_OBJECTIVES], (0,), ()),
    # The confirmation (study/primary.py): the primary tests' points on fresh seeds, and
    # those of claims 1 and 5 at a second rung (`--scale=cpu-long`).
    'confirm': (lambda: [f'{primary.ARCH},{r},{n}' for r in ('medium', 'small')
                         for n in primary.NUM_PATCHES], primary.CONFIRMATORY_SEEDS, ()),
    'confirm_trend': (lambda: [f'{primary.ARCH},medium,{n}' for n in primary.NUM_PATCHES],
                      primary.CONFIRMATORY_SEEDS[:primary.TREND_SEEDS], ()),
}
GRIDS['claims'] = GRIDS['claims'][:2] + (TESTED_ON_NATURAL,)
# Every experiment of the paper at one rung, the most decisive first (claim 2 has never
# run). A point named by two parts runs once.
STUDY = ('claim2', 'claims', 'families', 'categories', 'table2_resnet', 'table2_slow')
GRID_NAMES = (*GRIDS, 'study')


def grid_points(name: str, scale: str, seeds=None) -> list[Point]:
  """The points of the named grid at `scale`, seed by seed (a grid stopped part way has
  whole curves); `seeds` replaces the grid's own seeds.
  `study` is the union of STUDY's grids, in order, each point once."""
  if name == 'study':
    points = {}
    for part in STUDY:
      for point in grid_points(part, scale, seeds):
        points.setdefault(point.name, point)
    return list(points.values())
  if name not in GRIDS:
    raise ConfigError(f'Unknown grid {name!r}: choose one of {", ".join(GRID_NAMES)}.')
  args, default_seeds, overrides = GRIDS[name]
  return [Point(f'{arg},scale={scale},seed={seed}', overrides)
          for seed in (seeds or default_seeds) for arg in args()]


def encode(points: list[Point]) -> str:
  """The points as JSON: [[arg, [[field, value], ...]], ...] (tuples as lists)."""
  return json.dumps([[p.arg, [[field, value] for field, value in p.overrides]]
                     for p in points])


def decode(text: str) -> list[Point]:
  """The points `encode` wrote (lists back to tuples)."""
  try:
    return [Point(arg, tuple((field, tuple(value) if isinstance(value, list) else value)
                             for field, value in overrides))
            for arg, overrides in json.loads(text)]
  except (ValueError, TypeError) as error:
    raise ConfigError(f'--points is not a list of [arg, overrides] ({error}): pass what '
                      'jaxderain.study.grids.encode writes.') from None
