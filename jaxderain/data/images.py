"""Reading image files into uint8 RGB arrays, with one clear error per bad file.

Conversions (documented, applied silently): greyscale and palette images are expanded to
RGB; an alpha channel is dropped (the colour values are kept as stored); 16-bit images are
scaled to 8 bits (round(v / 257)); CMYK JPEGs are converted by PIL's
CMYK->RGB; JPEG EXIF orientation is applied so the array is upright as viewers show it.
"""

from __future__ import annotations

import logging
import os
import pathlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


class ImageError(ValueError):
  """A file that cannot be used as an image; the message names the file and the fix."""


def load_image(path) -> np.ndarray:
  """An image file as uint8 (H, W, 3) RGB."""
  path = pathlib.Path(path)
  if path.is_dir():
    raise ImageError(f'{path} is a directory, not an image file: pass the image inside it '
                     'or use it as a folder of images.')
  if not path.exists():
    raise ImageError(f'{path} does not exist: check the path.')
  if not os.access(path, os.R_OK):
    raise ImageError(f'{path} is not readable (permissions): fix them with chmod +r or '
                     'remove the file.')
  if path.stat().st_size == 0:
    raise ImageError(f'{path} is empty (0 bytes): remove or replace it.')
  try:
    with Image.open(path) as image:
      image = ImageOps.exif_transpose(image)
      return _to_rgb8(image)
  except (UnidentifiedImageError, OSError, SyntaxError) as error:
    raise ImageError(f'{path} is not a readable image ({error}): it may be truncated or '
                     'not an image at all; remove or replace it.') from None


def _to_rgb8(image: Image.Image) -> np.ndarray:
  if image.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
    array = np.asarray(image, dtype=np.int64)
    scale = 257.0 if image.mode.startswith('I;16') or array.max() > 255 else 1.0
    array = np.clip(np.round(array / scale), 0, 255).astype(np.uint8)
    return np.repeat(array[..., None], 3, axis=-1)
  if image.mode == 'F':
    array = np.asarray(image, dtype=np.float64)
    array = np.clip(np.round(array * (255.0 if array.max() <= 1.0 else 1.0)), 0, 255)
    return np.repeat(array.astype(np.uint8)[..., None], 3, axis=-1)
  return np.array(image.convert('RGB'), dtype=np.uint8)


def image_files(folder) -> list[pathlib.Path]:
  """Image files directly inside `folder`, sorted by name."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise ImageError(f'{folder} is not a folder: pass a folder of images '
                     f'({", ".join(IMAGE_SUFFIXES)}).')
  files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
  if not files:
    raise ImageError(f'{folder} holds no image files ({", ".join(IMAGE_SUFFIXES)}): '
                     'point to a folder that does.')
  return files


def load_folder(folder, strict: bool = False) -> dict[str, np.ndarray]:
  """All images of a folder as {file name: uint8 (H, W, 3)}.

  A bad file among good ones is logged once by name and skipped; `strict` makes it fatal.
  """
  images = {}
  for path in image_files(folder):
    try:
      images[path.name] = load_image(path)
    except ImageError as error:
      if strict:
        raise
      logging.warning('Skipping %s', error)
  if not images:
    raise ImageError(f'{folder}: none of its image files could be read (see the warnings '
                     'above); fix or replace them.')
  return images


def paired_files(folder) -> list[tuple[str, pathlib.Path, pathlib.Path]]:
  """(name, rainy path, clean path) of a paired set FOLDER/rainy/X with FOLDER/clean/X,
  ordered by number (1, 2, 10); a file without a partner is an error naming it."""
  folder = pathlib.Path(folder)
  rainy_dir, clean_dir = folder / 'rainy', folder / 'clean'
  if not (rainy_dir.is_dir() and clean_dir.is_dir()):
    raise ImageError(f'{folder} is not a paired set: it needs rainy/ and clean/ '
                     'sub-folders holding images with the same names.')
  rainy = {p.name: p for p in image_files(rainy_dir)}
  clean = {p.name: p for p in image_files(clean_dir)}
  unpaired = [f'rainy/{n}' if n in rainy else f'clean/{n}'
              for n in sorted(set(rainy) ^ set(clean))]
  if unpaired:
    raise ImageError(f'{folder}: {len(unpaired)} file(s) have no partner in the other '
                     f'sub-folder ({", ".join(unpaired[:5])}): add or remove them.')
  return [(n, rainy[n], clean[n]) for n in sorted(rainy, key=lambda n: (len(n), n))]
