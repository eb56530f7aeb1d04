"""Derain photo files: plan outputs named after the inputs, run a model over each in tiles,
write it back in the input's form (jaxderain/data/images.py read_photo / write_photo)."""

from __future__ import annotations

import logging
import pathlib
import sys

import tqdm

from jaxderain.data import IMAGE_SUFFIXES, ImageError, read_photo, write_photo
from jaxderain.eval.tiles import count_tiles, predict_tiled


def plan(input_path, output_dir) -> list[tuple[pathlib.Path, pathlib.Path]]:
  """(input file, output PNG) pairs; outputs named after the inputs, never onto an input."""
  source = pathlib.Path(input_path)
  if source.is_dir():
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
      raise ImageError(f'{source} holds no image files ({", ".join(IMAGE_SUFFIXES)}).')
  elif source.exists():
    files = [source]
  else:
    raise ImageError(f'{source} does not exist: pass an image file or a folder of them.')
  output_dir = pathlib.Path(output_dir)
  pairs, taken = [], set()
  for path in files:
    target = output_dir / f'{path.stem}.png'
    if target in taken:  # photo.jpg next to photo.png
      target = output_dir / f'{path.stem}_{path.suffix.lstrip(".").lower()}.png'
    if target.exists() and target.resolve() == path.resolve():
      raise ImageError(f'writing {target} would overwrite the input: pass another --output.')
    taken.add(target)
    pairs.append((path, target))
  return pairs


def derain_files(predict, pairs, tile=256, overlap=32, batch=4, strict=False) -> dict:
  """Derain each (input, output) pair, with a progress bar over tiles on stderr; returns
  {'written': [output paths], 'skipped': {input name: why}}."""
  written, skipped = [], {}
  with tqdm.tqdm(total=0, unit='tile', file=sys.stderr, dynamic_ncols=True) as bar:
    for index, (source, target) in enumerate(pairs):
      try:
        photo = read_photo(source)
      except ImageError as error:
        if strict:
          raise
        logging.warning('Skipping %s', error)
        skipped[source.name] = str(error)
        continue
      bar.total += count_tiles(*photo.rgb.shape[:2], tile, overlap)
      bar.set_description(f'image {index + 1}/{len(pairs)} {source.name}')
      derained = predict_tiled(predict, photo.rgb, tile, overlap, batch, on_tiles=bar.update)
      target.parent.mkdir(parents=True, exist_ok=True)
      write_photo(target, derained, photo)
      written.append(str(target))
  return {'written': written, 'skipped': skipped}
