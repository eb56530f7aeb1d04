"""Figure 2-style panels as PNG: rain of each range, background patches of each category.

  python -m jaxderain.data.show --what=rain --out=rain.png
  python -m jaxderain.data.show --what=backgrounds --categories=natural,urban100 \
      --data_dir=DATA --out=backgrounds.png
"""

from __future__ import annotations

import os
import pathlib

import jax
import numpy as np
from absl import flags
from PIL import Image, ImageDraw

from jaxderain import cli, rain
from jaxderain.data.backgrounds import background_set, load_category
from jaxderain.data.testsets import short_category

_WHAT = flags.DEFINE_enum('what', 'rain', ['rain', 'backgrounds'], 'Which panel.')
_OUT = flags.DEFINE_string('out', None, 'Output PNG path.', required=True)
_CATEGORIES = flags.DEFINE_list('categories', ['natural'], 'Background categories.')
_DATA_DIR = flags.DEFINE_string('data_dir', os.environ.get('JAXDERAIN_DATA_DIR', ''),
                                'Folder with backgrounds/<category>/ (optional).')
_SAMPLES = flags.DEFINE_integer('samples', 6, 'Columns per row.')
_SIZE = flags.DEFINE_integer('size', 128, 'Tile size in pixels.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the samples.')

_LABEL_WIDTH = 90


def panel(rows: list[tuple[str, np.ndarray]]) -> Image.Image:
  """Rows of (label, uint8 (K, S, S, 3) tiles) as one image with a label column."""
  size = rows[0][1].shape[1]
  columns = max(len(tiles) for _, tiles in rows)
  canvas = Image.new('RGB', (_LABEL_WIDTH + columns * (size + 2), len(rows) * (size + 2)),
                     'white')
  draw = ImageDraw.Draw(canvas)
  for r, (label, tiles) in enumerate(rows):
    top = r * (size + 2)
    draw.text((4, top + size // 2 - 6), label, fill='black')
    for c, tile in enumerate(tiles):
      canvas.paste(Image.fromarray(tile), (_LABEL_WIDTH + c * (size + 2), top))
  return canvas


def rain_rows(samples: int, size: int, seed: int, background: np.ndarray):
  """For each range: its rain layers R, and the same rain on one background B."""
  ranges = {**rain.TRAINING_RANGES, 'unseen (test)': rain.UNSEEN_RANGE}
  rows = []
  for i, (name, spec) in enumerate(ranges.items()):
    layers = np.asarray(rain.synthesize(jax.random.key(seed + i), samples, size, size, spec))
    rainy = np.clip(background[None].astype(np.float32) / 255.0 + layers, 0, 1)
    rows.append((f'{name} R', (np.repeat(layers, 3, -1) * 255 + 0.5).astype(np.uint8)))
    rows.append((f'{name} B+R', (rainy * 255 + 0.5).astype(np.uint8)))
  return rows


def main(argv):
  cli.no_arguments(argv)
  if _WHAT.value == 'rain':
    natural = load_category('natural')
    background = background_set(natural.test, 1, _SIZE.value, _SEED.value)[0]
    rows = rain_rows(_SAMPLES.value, _SIZE.value, _SEED.value, background)
  else:
    rows = []
    for name in _CATEGORIES.value:
      category = load_category(name, _DATA_DIR.value or None)
      rows.append((short_category(name)[:12],
                   background_set(category.train, _SAMPLES.value, _SIZE.value,
                                  _SEED.value)))
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  panel(rows).save(out)
  print(f'wrote {out}')


if __name__ == '__main__':
  cli.run(main)
