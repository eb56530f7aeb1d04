"""Test sets on rain the training never saw: (rainy O, clean B, rain layer R) triples.

- `heldout_synthetic`: held-out backgrounds of a category with the built-in unseen rain
  generator (thin, short, strongly slanted streaks; see `rain.UNSEEN_RANGE`).
- `heldout_real_rain`: held-out backgrounds with real rain layers cut from a paired set
  (the paper's test rain: Yang et al. 2017's, via Rain100L), for any category.
- `paired_folder`: a paired set as given, e.g. Rain100L (`rainy/N.png` with `clean/N.png`),
  its rain layer R = clip(rainy - clean, 0, 1).
Images are float32 in [0, 1]; sets are lists because real pairs differ in size.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxderain import rain
from jaxderain.data.backgrounds import background_set
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


def heldout_synthetic(name: str, test_images: dict[str, np.ndarray], num_images: int,
                      size: int, seed: int, rain_range=rain.UNSEEN_RANGE) -> TestSet:
  """`num_images` crops of size x size from held-out images, with synthetic rain."""
  clean = background_set(test_images, num_images, size, seed, test_set=True)
  return with_synthetic_rain(name, clean, seed, rain_range)


def heldout_real_rain(name: str, test_images: dict[str, np.ndarray], pairs: TestSet,
                      num_images: int, size: int, seed: int) -> TestSet:
  """`num_images` held-out crops, each with a random size x size crop of a random rain
  layer of `pairs` (seeded): O = clip(B + R, 0, 1) with R = clip(rainy - clean, 0, 1)."""
  smallest = min(min(layer.shape[:2]) for layer in pairs.rain_layer)
  if size > smallest:
    raise ImageError(f'Test crops of {size}x{size} do not fit the {smallest}-pixel side of '
                     f'the rain layers of {pairs.name}: use a smaller --config.eval.image_size.')
  clean = background_set(test_images, num_images, size, seed,
                         test_set=True).astype(np.float32) / 255.0
  rng = np.random.default_rng(seed)
  layers = []
  for _ in range(num_images):
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


def point_test_sets(own, extra, pairs: TestSet | None, shifted, train_backgrounds,
                    train_rain, count: int, size: int, seed: int) -> list[TestSet]:
  """A grid point's test sets, all with rain the training never saw unless noted:
  - `<cat>_unseen`: the built-in unseen rain on the category's held-out backgrounds;
  - `<cat>_rain100L` and `rain100L`: `pairs`' rain layers on them, and the pairs as
    given, when there are pairs;
  - the same held-out sets of each category in `extra` (cross-category);
  - `<cat>_<axis><value>`: the `shifted` rains (rain/shifts.py) on the held-out
    backgrounds, one parameter moved away from the training rain, all with one rain key,
    so the sets differ only in that parameter;
  - `<cat>_train`: up to `count` of the uint8 `train_backgrounds` with fresh draws of the
    training rain (not unseen: the convergence check, did the run learn its task?).
  own, extra: data.Category; count crops of size x size; seed: the test rain's key."""
  sets = []
  for found in [own, *extra]:
    sets.append(heldout_synthetic(set_name(found.name, UNSEEN), found.test, count, size,
                                  seed))
    if pairs is not None:
      sets.append(heldout_real_rain(set_name(found.name, RAIN100L), found.test, pairs,
                                    count, size, seed))
  if pairs is not None:
    sets.append(pairs)
  sets += [heldout_synthetic(set_name(own.name, rain_.name), own.test, count, size, seed,
                             rain_.rain_range) for rain_ in shifted]
  chosen = np.linspace(0, len(train_backgrounds) - 1,
                       min(count, len(train_backgrounds))).astype(int)
  sets.append(with_synthetic_rain(set_name(own.name, TRAIN), train_backgrounds[chosen],
                                  seed + 1, train_rain))
  return sets
