"""Test sets on rain the training never saw: (rainy O, clean B, rain layer R) triples.

- `with_synthetic_rain`: backgrounds (e.g. crops of a category's held-out images) with
  synthetic rain, by default the built-in unseen rain (thin, short, strongly slanted
  streaks; see `rain.UNSEEN_RANGE`).
- `heldout_real_rain`: held-out backgrounds with real rain layers cut from a paired set
  (the paper's test rain: Yang et al. 2017's, via Rain100L), for any category.
- `paired_folder`: a paired set as given, e.g. Rain100L (`rainy/N.png` with `clean/N.png`),
  its rain layer R = clip(rainy - clean, 0, 1).
Images are float32 in [0, 1]; sets are lists because real pairs differ in size.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np

from jaxderain import rain
from jaxderain.data.backgrounds import (BackgroundSpec, background_set, load_category,
                                        training_set)
from jaxderain.data.images import ImageError, load_image, paired_files


# The rains a grid point is tested on; a test set is named `<category>_<rain>`
# (set_name), the category by the last part of its name or folder (short_category).
UNSEEN = 'unseen'  # the built-in unseen rain (rain.UNSEEN_RANGE)
RAIN100L = 'rain100L'  # Rain100L's real rain layers (alone: Rain100L as given)
TRAIN = 'train'  # the run's own training patches and rain: the convergence check


def short_category(category: str) -> str:
  """A category's name in test-set names: the last part of a name or folder path."""
  return str(category).rstrip('/').split('/')[-1]


def set_name(category: str, test_rain: str) -> str:
  """The test set of `test_rain` (UNSEEN, RAIN100L, TRAIN or a shifted rain's name) on
  `category`'s backgrounds, e.g. 'natural_unseen'."""
  return f'{short_category(category)}_{test_rain}'


@dataclasses.dataclass
class TestSet:
  """name; rainy, clean: lists of float32 (H, W, 3); rain_layer: float32 (H, W, 1 or 3)."""
  name: str
  rainy: list[np.ndarray]
  clean: list[np.ndarray]
  rain_layer: list[np.ndarray]

  def __len__(self):
    return len(self.clean)


def with_synthetic_rain(name: str, clean: np.ndarray, seed: int,
                        rain_range=rain.UNSEEN_RANGE) -> TestSet:
  """uint8 (N, S, S, 3) backgrounds with synthetic rain drawn from key `seed`."""
  count, height, width = clean.shape[:3]
  clean = clean.astype(np.float32) / 255.0
  layer = np.asarray(rain.synthesize(jax.random.key(seed), count, height, width,
                                     rain_range))
  rainy = np.clip(clean + layer, 0.0, 1.0)
  return TestSet(name, list(rainy), list(clean), list(layer))


def heldout_real_rain(name: str, clean: np.ndarray, pairs: TestSet, seed: int) -> TestSet:
  """uint8 (N, S, S, 3) held-out backgrounds, each with a random S x S crop of a random
  rain layer of `pairs` (seeded): O = clip(B + R, 0, 1) with R = clip(rainy - clean, 0, 1)."""
  count, size = clean.shape[:2]
  smallest = min(min(layer.shape[:2]) for layer in pairs.rain_layer)
  if size > smallest:
    raise ImageError(f'Test crops of {size}x{size} do not fit the {smallest}-pixel side of '
                     f'the rain layers of {pairs.name}: use a smaller --config.eval.image_size.')
  clean = clean.astype(np.float32) / 255.0
  rng = np.random.default_rng(seed)
  layers = []
  for _ in range(count):
    layer = pairs.rain_layer[rng.integers(len(pairs))]
    top = rng.integers(layer.shape[0] - size + 1)
    left = rng.integers(layer.shape[1] - size + 1)
    layers.append(layer[top:top + size, left:left + size])
  rainy = np.clip(clean + np.stack(layers), 0.0, 1.0)
  return TestSet(name, list(rainy), list(clean), layers)


def paired_set(name: str, rainy: list[np.ndarray], clean: list[np.ndarray],
               names: list[str]) -> TestSet:
  """A TestSet of uint8 (H, W, 3) pairs; R = clip(rainy - clean, 0, 1)."""
  for n, o, b in zip(names, rainy, clean):
    if o.shape != b.shape:
      raise ImageError(f'{name}: rainy/{n} is {o.shape[:2]} but clean/{n} is '
                       f'{b.shape[:2]}: a pair must have one size.')
  rainy = [o.astype(np.float32) / 255.0 for o in rainy]
  clean = [b.astype(np.float32) / 255.0 for b in clean]
  layers = [np.clip(o - b, 0.0, 1.0) for o, b in zip(rainy, clean)]
  return TestSet(name, rainy, clean, layers)


def paired_folder(name: str, folder, limit: int | None = None) -> TestSet:
  """A paired set laid out as FOLDER/rainy/X and FOLDER/clean/X (same file names)."""
  pairs = paired_files(folder)[:limit]
  return paired_set(name, [load_image(o) for _, o, _ in pairs],
                    [load_image(b) for _, _, b in pairs], [n for n, _, _ in pairs])


def rain100l(folder: str, data_dir: str, limit: int) -> TestSet | None:
  """Rain100L (its first `limit` pairs) from FOLDER when given, else from DATA_DIR: a
  TFDS build (`prepare --paired=rain100l`) or the folder DATA_DIR/rain100L; None when
  neither is there."""
  if folder:
    return paired_folder(RAIN100L, folder, limit)
  if not data_dir:
    return None
  from jaxderain.data import tfds_builders  # pylint: disable=g-import-not-at-top
  prepared = tfds_builders.load_prepared_pairs('rain100l', data_dir)
  if prepared is not None:
    names, rainy, clean = (part[:limit] for part in prepared)
    return paired_set(RAIN100L, rainy, clean, names)
  folder = pathlib.Path(data_dir) / 'rain100L'
  return paired_folder(RAIN100L, folder, limit) if folder.is_dir() else None


@dataclasses.dataclass(frozen=True)
class TestSpec:
  """What a grid point is tested on: `count` crops of `size` x `size` of each category's
  held-out images (its own, then `extra_categories`), rain drawn with `seed`; Rain100L
  from the folder `rain100l` or its data_dir (`rain100l_limit` pairs at most)."""
  extra_categories: tuple[str, ...]
  rain100l: str
  rain100l_limit: int
  count: int
  size: int
  seed: int


def point_test_sets(backgrounds: BackgroundSpec, spec: TestSpec, shifted,
                    train_rain) -> list[TestSet]:
  """A grid point's test sets, all with rain the training never saw unless noted:
  - `<cat>_unseen`: the built-in unseen rain on the category's held-out backgrounds;
  - `<cat>_rain100L` and `rain100L`: Rain100L's rain layers on them, and its pairs as
    given, when Rain100L is there (`rain100l`);
  - the same held-out sets of each extra category (cross-category);
  - `<cat>_<axis><value>`: the `shifted` rains (rain/shifts.py) on the held-out
    backgrounds, one parameter moved away from the training rain, all with one rain key,
    so the sets differ only in that parameter;
  - `<cat>_train`: up to `count` patches of the point's background set B with fresh
    draws of its training rain `train_rain` (not unseen: the convergence check, did the
    run learn its task?)."""
  own, train_backgrounds = training_set(backgrounds)
  extra = [load_category(c, backgrounds.data_dir, backgrounds.test_fraction)
           for c in spec.extra_categories if short_category(c) != short_category(own.name)]
  heldout = {found.name: background_set(found.test, spec.count, spec.size, spec.seed,
                                        test_set=True) for found in [own, *extra]}
  pairs = rain100l(spec.rain100l, backgrounds.data_dir, spec.rain100l_limit)
  sets = []
  for category, clean in heldout.items():
    sets.append(with_synthetic_rain(set_name(category, UNSEEN), clean, spec.seed))
    if pairs is not None:
      sets.append(heldout_real_rain(set_name(category, RAIN100L), clean, pairs, spec.seed))
  if pairs is not None:
    sets.append(pairs)
  sets += [with_synthetic_rain(set_name(own.name, rain_.name), heldout[own.name], spec.seed,
                               rain_.rain_range) for rain_ in shifted]
  chosen = np.linspace(0, len(train_backgrounds) - 1,
                       min(spec.count, len(train_backgrounds))).astype(int)
  sets.append(with_synthetic_rain(set_name(own.name, TRAIN), train_backgrounds[chosen],
                                  spec.seed + 1, train_rain))
  return sets
