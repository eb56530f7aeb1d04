"""Reading image files into uint8 RGB arrays, with one clear error per bad file.

Conversions (documented, applied silently): greyscale and palette images are expanded to
RGB; an alpha channel is dropped (the colour values are kept as stored); 16-bit images are
scaled to 8 bits (round(v / 257)); CMYK JPEGs are converted by PIL's
CMYK->RGB; JPEG EXIF orientation is applied so the array is upright as viewers show it.
Photos to derain (read_photo / write_photo) keep their alpha, greyscale and 16-bit depth.
"""

from __future__ import annotations

import dataclasses
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
  return _to_rgb8(_open_upright(path))


def _open_upright(path) -> Image.Image:
  """The decoded, upright (EXIF-oriented) PIL image of a file; ImageError for a bad file."""
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
      image.load()
      return ImageOps.exif_transpose(image)
  except (UnidentifiedImageError, OSError, SyntaxError) as error:
    raise ImageError(f'{path} is not a readable image ({error}): it may be truncated or '
                     'not an image at all; remove or replace it.') from None


@dataclasses.dataclass
class Photo:
  """A photo to derain: rgb float32 (H, W, 3) in [0, 1], and what writing it back
  needs: alpha float32 (H, W) or None, greyscale, and 8 or 16 bits per channel."""
  rgb: np.ndarray
  alpha: np.ndarray | None
  greyscale: bool
  bits: int


def read_photo(path) -> Photo:
  """Any common image file as a Photo (EXIF orientation applied; palette expanded;
  16-bit greyscale kept at 16 bits, other 16-bit images read at 8 bits by PIL)."""
  image = _open_upright(path)
  alpha = None
  if image.mode in ('RGBA', 'LA', 'PA') or 'transparency' in image.info:
    alpha = np.asarray(image.convert('RGBA'), np.float32)[..., 3] / 255.0
  if image.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
    grey = np.asarray(image, np.float64)
    top = 65535.0 if image.mode.startswith('I;16') or grey.max() > 255 else 255.0
    grey = np.clip(grey / top, 0, 1).astype(np.float32)
    return Photo(np.repeat(grey[..., None], 3, -1), alpha, True, 16 if top > 255 else 8)
  greyscale = image.mode in ('1', 'L', 'LA', 'F')
  return Photo(_to_rgb8(image).astype(np.float32) / 255.0, alpha, greyscale, 8)


def write_photo(path, rgb: np.ndarray, like: Photo) -> None:
  """Write float (H, W, 3) `rgb` in [0, 1] as a PNG shaped like `like`: greyscale as the
  channel mean, its alpha kept, 16-bit greyscale at 16 bits."""
  rgb = np.clip(rgb, 0.0, 1.0)
  if like.greyscale and like.bits == 16 and like.alpha is None:
    grey = np.round(rgb.mean(-1) * 65535.0).astype(np.uint16)
    Image.fromarray(grey).save(path)
    return
  channels = [rgb.mean(-1, keepdims=True)] if like.greyscale else [rgb]
  if like.alpha is not None:
    channels.append(like.alpha[..., None])
  array = np.round(np.concatenate(channels, -1) * 255.0).astype(np.uint8)
  Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(path)


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
