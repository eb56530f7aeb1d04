"""Reading image files into uint8 RGB arrays, with one clear error per bad file.

Conversions (documented, applied silently): greyscale and palette images are expanded to
RGB; an alpha channel is dropped (the colour values are kept as stored); 16-bit images are
scaled to 8 bits (round(v / 257)); CMYK JPEGs are converted by PIL's
CMYK->RGB; JPEG EXIF orientation is applied so the array is upright as viewers show it.
Photos to derain (read_photo / write_photo) keep their alpha, greyscale and 16-bit depth,
are read box by box from the decoded file and written as PNG row block by row block.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import pathlib
import stat
import struct
from typing import Iterable, Iterator
import warnings
import zlib

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from jaxderain.errors import ImageError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
_DEEP_MODES = ('I;16', 'I;16B', 'I;16L', 'I')  # greyscale stored in 16 or 32 bits
_GREY_MODES = _DEEP_MODES + ('1', 'L', 'LA', 'F')
# EXIF orientation -> (PIL transpose that turns the stored image upright, whether upright
# x runs along stored y, whether stored x and stored y run backwards).
_ORIENTATIONS = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT, False, True, False),
    3: (Image.Transpose.ROTATE_180, False, True, True),
    4: (Image.Transpose.FLIP_TOP_BOTTOM, False, False, True),
    5: (Image.Transpose.TRANSPOSE, True, False, False),
    6: (Image.Transpose.ROTATE_270, True, False, True),
    7: (Image.Transpose.TRANSVERSE, True, True, True),
    8: (Image.Transpose.ROTATE_90, True, True, False),
}
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels: grey, grey+alpha, RGB, RGBA


def load_image(path) -> np.ndarray:
  """An image file as uint8 (H, W, 3) RGB."""
  return _to_rgb8(_open_upright(path))


def _open_upright(path) -> Image.Image:
  """The decoded, upright (EXIF-oriented) PIL image of a file; ImageError for a bad file."""
  return ImageOps.exif_transpose(_open_decoded(path))


def _open_decoded(path, still: bool = False) -> Image.Image:
  """The decoded PIL image of a file as stored (its EXIF parsed); ImageError for a bad file,
  and with `still` for an animated one (several frames)."""
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
    with (warnings.catch_warnings(record=True, action='always') as caught,
          Image.open(path) as image):
      frames = getattr(image, 'n_frames', 1) if still else 1
      if frames > 1:
        raise ImageError(f'{path} is an animated image ({frames} frames): extract the '
                         'frames first (one image file each) and derain those.')
      image.load()
      image.getexif()  # parsed (and kept) while the file is open
      for message in dict.fromkeys(str(w.message).strip() for w in caught):
        logging.warning('%s: %s (read as far as PIL could).', path, message)
      return image
  except Image.DecompressionBombError:
    raise ImageError(f'{path} has more pixels than PIL opens safely (over '
                     f'{2 * Image.MAX_IMAGE_PIXELS:,}; a possible decompression bomb): split '
                     'or downscale it first.') from None
  except (UnidentifiedImageError, OSError, SyntaxError) as error:
    raise ImageError(f'{path} is not a readable image ({error}): it may be truncated or '
                     'not an image at all; remove or replace it.') from None


@dataclasses.dataclass
class Photo:
  """A photo to derain, decoded once and read box by box (no image-sized copy is made).

  image: the PIL image as stored; orientation: its EXIF orientation (1-8, how to turn it
  upright); greyscale; alpha: whether it has an alpha channel; bits: 8, or 16 for 16-bit
  greyscale; white: the stored value of white of 'I' and 'F' images (else 255)."""
  image: Image.Image
  orientation: int
  greyscale: bool
  alpha: bool
  bits: int
  white: float

  @property
  def height(self) -> int:
    """Upright height in pixels."""
    return self.image.height if self.orientation < 5 else self.image.width

  @property
  def width(self) -> int:
    """Upright width in pixels."""
    return self.image.width if self.orientation < 5 else self.image.height

  def rgb(self, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    """An upright box as float32 (bottom - top, right - left, 3) RGB in [0, 1]."""
    return _unit_rgb(self._crop(top, left, bottom, right), self.white)

  def alpha_rows(self, top: int, bottom: int, bits: int = 8) -> np.ndarray:
    """Upright rows [top, bottom) of the alpha channel, uint8 (bits 8) or uint16 (bits 16)
    (bottom - top, width). A greyscale image's transparent value (PNG tRNS) is alpha 0."""
    box = self._crop(top, 0, bottom, self.width)
    opaque = 65535 if bits == 16 else 255
    key = self.image.info.get('transparency')
    if self.image.mode in _DEEP_MODES and isinstance(key, int):
      alpha = np.where(np.asarray(box) == key, 0, opaque)
    else:
      alpha = np.asarray(box.convert('RGBA'), np.uint32)[..., 3] * (opaque // 255)
    return alpha.astype(np.uint16 if bits == 16 else np.uint8)

  def _crop(self, top: int, left: int, bottom: int, right: int) -> Image.Image:
    """An upright box as a small upright PIL image: the stored box under it, turned."""
    if self.orientation not in _ORIENTATIONS:
      return self.image.crop((left, top, right, bottom))
    turn, swapped, back_x, back_y = _ORIENTATIONS[self.orientation]
    xs, ys = ((top, bottom), (left, right)) if swapped else ((left, right), (top, bottom))
    if back_x:
      xs = (self.image.width - xs[1], self.image.width - xs[0])
    if back_y:
      ys = (self.image.height - ys[1], self.image.height - ys[0])
    return self.image.crop((xs[0], ys[0], xs[1], ys[1])).transpose(turn)


def read_photo(path) -> Photo:
  """Any common image file as a Photo (EXIF orientation applied; palette expanded;
  16-bit greyscale kept at 16 bits, other 16-bit images read at 8 bits by PIL). An
  animated image is an ImageError: which frame to derain is not ours to guess."""
  image = _open_decoded(path, still=True)
  orientation = _orientation(image)
  white = _white(image)
  return Photo(image, orientation=orientation if orientation in _ORIENTATIONS else 1,
               greyscale=image.mode in _GREY_MODES, alpha=_has_alpha(image),
               bits=16 if image.mode in _DEEP_MODES and white > 255 else 8, white=white)


def _orientation(image: Image.Image) -> int:
  """The EXIF orientation, 1 when absent (a damaged EXIF block was reported on opening)."""
  with warnings.catch_warnings(action='ignore'):
    return image.getexif().get(ExifTags.Base.Orientation, 1)


def _white(image: Image.Image) -> float:
  """The stored value of white: 65535 for 16-bit images and 'I' images above 255, 1 for
  'F' images within [0, 1], else 255."""
  if image.mode in _DEEP_MODES:
    return 65535.0 if image.mode.startswith('I;16') or image.getextrema()[1] > 255 else 255.0
  if image.mode == 'F':
    return 1.0 if image.getextrema()[1] <= 1.0 else 255.0
  return 255.0


def _has_alpha(image: Image.Image) -> bool:
  return image.mode in ('RGBA', 'LA', 'PA') or 'transparency' in image.info


def _unit_rgb(image: Image.Image, white: float) -> np.ndarray:
  """A (small) PIL image as float32 (H, W, 3) RGB in [0, 1]: 'I' images divided by
  `white`, 'F' images scaled so `white` is 255 and rounded to 8 bits, as load_image does."""
  if image.mode in _DEEP_MODES:
    grey = np.clip(np.asarray(image, np.float64) / white, 0, 1).astype(np.float32)
  elif image.mode == 'F':
    grey = np.clip(np.round(np.asarray(image, np.float64) * (255.0 / white)), 0, 255)
    grey = grey.astype(np.uint8).astype(np.float32) / 255.0
  else:
    return np.asarray(image.convert('RGB'), np.float32) / 255.0
  return np.repeat(grey[..., None], 3, -1)


def png_bytes_bound(path) -> int:
  """An upper bound, in bytes, of the derained PNG of an image file, from its header only:
  height x (width x samples x bytes per sample + 1) stored uncompressed, plus zlib's and
  the chunks' overhead. 0 for a file that cannot be opened (reported when it is read)."""
  try:
    # What is wrong with the file is told when it is read.
    with warnings.catch_warnings(action='ignore'), Image.open(path) as image:
      samples = (1 if image.mode in _GREY_MODES else 3) + _has_alpha(image)
      depth = 2 if image.mode in _DEEP_MODES else 1
      raw = image.height * (image.width * samples * depth + 1)
  except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
    return 0
  return raw + raw // 256 + 4096


def write_photo(path, rgb_blocks: Iterable[np.ndarray], like: Photo) -> None:
  """Write float32 (rows, W, 3) RGB row blocks in [0, 1], top to bottom, as a PNG shaped
  like `like`: greyscale as the channel mean, its alpha kept, 16-bit greyscale (with its
  alpha) at 16 bits. The blocks are overwritten (clipped and scaled in place)."""
  bits = like.bits
  channels = (1 if like.greyscale else 3) + like.alpha
  write_png(path, _photo_samples(rgb_blocks, like, bits), like.height, like.width, channels,
            bits)


def _photo_samples(rgb_blocks: Iterable[np.ndarray], like: Photo,
                   bits: int) -> Iterator[np.ndarray]:
  """Each block's samples, uint8 or uint16 (rows, W, channels), with the photo's alpha."""
  top = 0
  for rgb in rgb_blocks:
    samples = _quantize(rgb, like.greyscale, bits)
    if like.alpha:
      alpha = like.alpha_rows(top, top + len(rgb), bits)[..., None]
      samples = np.concatenate([samples, alpha], -1)
    top += len(rgb)
    yield samples


def _quantize(rgb: np.ndarray, greyscale: bool, bits: int) -> np.ndarray:
  """Float32 (rows, W, 3) RGB, clipped to [0, 1] in place, as uint8 or uint16 samples
  (rows, W, 1 or 3): greyscale as the channel mean."""
  values = np.clip(rgb, 0.0, 1.0, out=rgb)
  if greyscale:
    values = values.mean(-1, keepdims=True)
  values *= 65535.0 if bits == 16 else 255.0
  return np.round(values, out=values).astype(np.uint16 if bits == 16 else np.uint8)


def write_png(path, blocks: Iterable[np.ndarray], height: int, width: int, channels: int,
              bits: int = 8) -> None:
  """Write row blocks of samples, top to bottom, as a PNG, compressing each as it comes.

  blocks: uint8 (bits 8) or uint16 (bits 16) arrays (rows, width, channels), `height` rows
  in all; channels 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA. The file is written beside
  `path` and renamed onto it once complete, so a failure leaves no partial PNG there."""
  path = pathlib.Path(path)
  partial = path.with_name(f'.{path.name}.{os.getpid()}.partial')
  try:
    with open(partial, 'xb') as file:
      _write_png_stream(file, blocks, height, width, channels, bits)
    os.replace(partial, path)
  finally:
    partial.unlink(missing_ok=True)


def _write_png_stream(file, blocks: Iterable[np.ndarray], height: int, width: int,
                      channels: int, bits: int) -> None:
  """Signature, IHDR, one IDAT chunk per piece of zlib output, IEND."""
  file.write(_PNG_SIGNATURE)
  file.write(_png_chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, bits,
                                             _PNG_COLOUR_TYPES[channels], 0, 0, 0)))
  compressor = zlib.compressobj(6)
  dtype, rows = np.dtype(np.uint16 if bits == 16 else np.uint8), 0
  for block in blocks:
    if block.dtype != dtype or block.shape[1:] != (width, channels):
      raise ValueError(f'PNG rows must be {dtype} (rows, {width}, {channels}), got '
                       f'{block.dtype} {block.shape}.')
    rows += len(block)
    file.write(_png_chunk(b'IDAT', compressor.compress(_scanlines(block))))
  if rows != height:
    raise ValueError(f'The PNG was declared {height} rows high but got {rows}.')
  file.write(_png_chunk(b'IDAT', compressor.flush()))
  file.write(_png_chunk(b'IEND', b''))


def _scanlines(block: np.ndarray) -> np.ndarray:
  """uint8 (rows, 1 + row bytes): filter type 0 (none), then the big-endian samples."""
  samples = np.ascontiguousarray(block, block.dtype.newbyteorder('>'))
  samples = samples.reshape(len(block), -1).view(np.uint8)
  lines = np.zeros((len(block), 1 + samples.shape[1]), np.uint8)
  lines[:, 1:] = samples
  return lines


def _png_chunk(kind: bytes, data: bytes) -> bytes:
  """Length, type, data, CRC-32 of type and data; nothing for an empty IDAT."""
  if kind == b'IDAT' and not data:
    return b''
  crc = zlib.crc32(data, zlib.crc32(kind))
  return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', crc)


def _to_rgb8(image: Image.Image) -> np.ndarray:
  if image.mode in _DEEP_MODES:
    array = np.asarray(image, dtype=np.int64)
    scale = 257.0 if image.mode.startswith('I;16') or array.max() > 255 else 1.0
    array = np.clip(np.round(array / scale), 0, 255).astype(np.uint8)
    return np.repeat(array[..., None], 3, axis=-1)
  if image.mode == 'F':
    array = np.asarray(image, dtype=np.float64)
    array = np.clip(np.round(array * (255.0 if array.max() <= 1.0 else 1.0)), 0, 255)
    return np.repeat(array.astype(np.uint8)[..., None], 3, axis=-1)
  return np.array(image.convert('RGB'), dtype=np.uint8)


def not_regular(path: pathlib.Path) -> str | None:
  """What `path` is when it is not a regular file (a FIFO, a symlink loop, ...), or
  None for a regular file; decided without opening it (a FIFO would block a read)."""
  try:
    mode = path.stat().st_mode
  except OSError as error:
    kinds = {errno.ELOOP: 'a symlink loop', errno.ENOENT: 'a broken link'}
    return kinds.get(error.errno, error.strerror or 'unreadable')
  for test, kind in ((stat.S_ISREG, None), (stat.S_ISDIR, 'a folder'),
                     (stat.S_ISFIFO, 'a FIFO'), (stat.S_ISSOCK, 'a socket')):
    if test(mode):
      return kind
  return 'a device'


def image_files(folder) -> list[pathlib.Path]:
  """Regular image files directly inside `folder`, sorted by name; other entries with an
  image suffix (a FIFO, a device, a symlink loop) are named in a warning and skipped."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise ImageError(f'{folder} is not a folder: pass a folder of images '
                     f'({", ".join(IMAGE_SUFFIXES)}).')
  files = []
  for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
    if (kind := not_regular(path)) is None:
      files.append(path)
    else:
      logging.warning('Skipping %s: it is %s, not an image file.', path, kind)
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
