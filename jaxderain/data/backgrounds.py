"""Background categories, their train/test split, and exact background sets B.

A category is a pool of images split by image into training and test images, so test
backgrounds never share pixels with training patches. A background set is exactly N
patches of P x P drawn from the training images, deterministically from a seed.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
import pathlib
import zlib

import numpy as np
from PIL import Image

from jaxderain.data.images import ImageError, load_folder, load_image

# Colour photographs bundled inside the scikit-image wheel: the default `natural`
# category, usable with no download. The two motorcycle views are near-duplicates and so
# both stay on the training side.
EMBEDDED_NATURAL_TRAIN = ('astronaut.png', 'rocket.jpg', 'motorcycle_left.png',
                          'motorcycle_right.png', 'hubble_deep_field.jpg')
EMBEDDED_NATURAL_TEST = ('chelsea.png', 'coffee.png')
EMBEDDED = {'natural': (EMBEDDED_NATURAL_TRAIN, EMBEDDED_NATURAL_TEST)}


@dataclasses.dataclass(frozen=True)
class BackgroundSpec:
  """A grid point's backgrounds: its category (found as `load_category` finds it, split
  by image with `test_fraction` held out, images below `upscale_to`'s (train, test) sides
  upscaled when given), and its background set B, N = `num_patches` patches of P x P
  (`patch_size`) drawn from the training images with `seed`."""
  category: str
  data_dir: str | None
  test_fraction: float
  strict: bool
  upscale_to: tuple[int, int] | None
  num_patches: int
  patch_size: int
  seed: int


@dataclasses.dataclass
class Category:
  """A background category: uint8 (H, W, 3) images by name, split by image."""
  name: str
  train: dict[str, np.ndarray]
  test: dict[str, np.ndarray]


def _embedded(name: str) -> Category:
  folder = importlib.resources.files('skimage.data')
  train_names, test_names = EMBEDDED[name]
  load = lambda names: {n: load_image(folder / n) for n in names}
  return Category(name, load(train_names), load(test_names))


def split_by_name(names, test_fraction: float) -> tuple[list[str], list[str]]:
  """Deterministic image-level split: the test side is the ceil(fraction * n) names
  with the smallest CRC32, so it depends on the names alone, not on their order."""
  if len(names) < 2:
    raise ImageError(f'A category needs at least 2 images to hold some out for testing, '
                     f'got {len(names)}: add images to the folder.')
  ordered = sorted(names, key=lambda n: (zlib.crc32(n.encode()), n))
  num_test = min(max(1, int(np.ceil(test_fraction * len(names)))), len(names) - 1)
  return sorted(ordered[num_test:]), sorted(ordered[:num_test])


def load_category(category: str, data_dir: str | None = None, test_fraction: float = 0.25,
                  strict: bool = False, upscale_to: tuple[int, int] | None = None) -> Category:
  """Resolve a category, first match wins: a TFDS build of NAME in DATA_DIR
  (`python -m jaxderain.data.prepare`), the folder DATA_DIR/backgrounds/NAME, an embedded
  set by name, a folder of images given by path. upscale_to: (train side, test side),
  the sides below which its training and test images are upscaled (upscale_small)."""
  found = _load_category(category, data_dir, test_fraction, strict)
  if upscale_to is not None:
    found.train = upscale_small(found.train, upscale_to[0])
    found.test = upscale_small(found.test, upscale_to[1])
  return found


def _load_category(category: str, data_dir: str | None, test_fraction: float,
                   strict: bool) -> Category:
  images = None
  if data_dir:
    from jaxderain.data import tfds_builders  # pylint: disable=g-import-not-at-top
    images = tfds_builders.load_prepared_category(category, data_dir)
  if images is None:
    candidates = [pathlib.Path(data_dir) / 'backgrounds' / category] if data_dir else []
    if not (candidates and candidates[0].is_dir()) and category in EMBEDDED:
      return _embedded(category)
    candidates.append(pathlib.Path(category))
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is None:
      raise ImageError(
          f'Unknown background category {category!r}: use an embedded one '
          f'({", ".join(EMBEDDED)}), a folder of images by path, or a name prepared in or '
          f'under DATA_DIR/backgrounds/ with data_dir set (now {data_dir!r}).')
    images = load_folder(folder, strict=strict)
  train, test = split_by_name(list(images), test_fraction)
  return Category(str(category), {n: images[n] for n in train}, {n: images[n] for n in test})


def upscale_small(images: dict[str, np.ndarray], min_side: int) -> dict[str, np.ndarray]:
  """The resize policy for images smaller than a patch: those with a side below
  `min_side` are upscaled (bicubic, aspect kept) so that side equals `min_side`."""
  resized = {}
  for name, image in images.items():
    height, width = image.shape[:2]
    if min(height, width) < min_side:
      factor = min_side / min(height, width)
      size = (max(min_side, round(width * factor)), max(min_side, round(height * factor)))
      image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
    resized[name] = image
  return resized


def _allocate(capacity: np.ndarray, total: int) -> np.ndarray:
  """Split `total` over images in proportion to their capacity, never above it
  (largest remainder, ties to the earlier image)."""
  counts = np.zeros_like(capacity)
  remaining = total
  open_ = capacity > 0
  while remaining > 0:
    share = remaining * capacity * open_ / np.sum(capacity * open_)
    add = np.minimum(np.floor(share).astype(np.int64), capacity - counts)
    if add.sum() == 0:  # hand out the remainder one by one, largest share first
      order = np.argsort(-(share - np.floor(share)), kind='stable')
      for i in order[:remaining]:
        if counts[i] < capacity[i]:
          add[i] = 1
    counts += add
    remaining = total - counts.sum()
    open_ = counts < capacity
  return counts


def background_set(images: dict[str, np.ndarray], num_patches: int, patch_size: int,
                   seed: int, test_set: bool = False) -> np.ndarray:
  """Exactly `num_patches` distinct P x P patches: uint8 (N, P, P, 3), the paper's B set.

  Policy: every top-left position of every image is a candidate; N is split over images
  in proportion to their number of positions (so large images give more patches), and
  positions are drawn without replacement within each image. The result depends only on
  (images, N, P, seed); patches are ordered by image name, then by draw.
  Images smaller than P are skipped with a warning. The errors advise the options that
  set N and P: the training's, or for a `test_set` the evaluation's (which may change on
  a trained workdir).
  """
  count_option, size_option = (('--config.eval.num_images', '--config.eval.image_size')
                               if test_set else ('--config.num_patches', '--config.patch_size'))
  if num_patches < 1:
    raise ValueError(f'num_patches must be positive, got {num_patches}.')
  names = sorted(images)
  shapes = {n: images[n].shape[:2] for n in names}
  small = [n for n in names if min(shapes[n]) < patch_size]
  usable = [n for n in names if n not in small]
  if small:
    logging.warning('Skipping %d image(s) smaller than the %dx%d patch: %s', len(small),
                    patch_size, patch_size, ', '.join(small[:5]))
  if not usable:
    sizes = ', '.join(f'{n} {h}x{w}' for n, (h, w) in list(shapes.items())[:5])
    raise ImageError(
        f'No image is at least {patch_size}x{patch_size} ({sizes}): use a smaller size '
        f'({size_option}), ' + ('or larger images.' if test_set else
                                'upscale them (--config.upscale_small_images=True), or '
                                'larger images.'))
  capacity = np.array([(shapes[n][0] - patch_size + 1) * (shapes[n][1] - patch_size + 1)
                       for n in usable], dtype=np.int64)
  if num_patches > capacity.sum():
    raise ImageError(
        f'{num_patches} patches of {patch_size}x{patch_size} were asked for, but the '
        f'{len(usable)} usable image(s) hold only {capacity.sum()} distinct positions: use '
        f'fewer ({count_option}), a smaller size ({size_option}), or more images.')
  counts = _allocate(capacity, num_patches)
  rng = np.random.default_rng(seed)
  patches = []
  for name, count, cap in zip(usable, counts, capacity):
    if count == 0:
      continue
    height, width = shapes[name]
    positions = rng.choice(cap, size=count, replace=False)
    rows, cols = np.divmod(positions, width - patch_size + 1)
    image = images[name]
    patches.extend(image[r:r + patch_size, c:c + patch_size] for r, c in zip(rows, cols))
  return np.stack(patches).astype(np.uint8)


def training_set(spec: BackgroundSpec) -> tuple[Category, np.ndarray]:
  """The category of `spec` and its background set B, uint8 (N, P, P, 3)."""
  own = load_category(spec.category, spec.data_dir, spec.test_fraction, spec.strict,
                      spec.upscale_to)
  return own, background_set(own.train, spec.num_patches, spec.patch_size, spec.seed)
