"""Derain photo files: plan outputs named after the inputs and check where they go, before
any work; then run a model over each photo in tiles, band by band, writing the PNG as its
rows come (jaxderain/data/images.py read_photo / write_photo).

OUTPUT/.derain.json records each output written and the input it came from (path, size,
modification time), so a run stopped part way resumes: a rerun keeps the outputs of
unchanged inputs and derains the rest, while any other file already there is refused
unless --overwrite. Partial files a killed run left behind are removed."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import sys

import tqdm

from jaxderain.data import ImageError, png_bytes_bound, read_photo, write_photo
from jaxderain.data.images import image_files, not_regular
from jaxderain.eval.tiles import count_tiles, predict_bands
from jaxderain.workdir import alive, ensure_writable

MANIFEST = '.derain.json'
_PARTIAL = re.compile(r'^\..+\.(\d+)\.partial$')  # images.write_png's partial files


def plan(input_path, output_dir, overwrite: bool = False,
         model: str = '') -> list[tuple[pathlib.Path, pathlib.Path]]:
  """(input file, output PNG) pairs still to derain, each output OUTPUT/<input stem>.png.

  An output that would be an input of this call or another output of it is named
  <stem>_<suffix>.png instead (ImageError if that is taken too). Without `overwrite`, an
  output an earlier run wrote from the same, unchanged input with the same `model` (a
  workdir) is kept (and left out), and any other output file that already exists is an
  ImageError. Nothing is written."""
  source = pathlib.Path(input_path)
  if not source.exists() and not source.is_symlink():
    raise ImageError(f'{source} does not exist: pass an image file or a folder of them.')
  if not source.is_dir() and (kind := not_regular(source)):
    raise ImageError(f'{source} is {kind}, not an image file: pass an image file or a '
                     'folder of them.')
  files = image_files(source) if source.is_dir() else [source]
  output_dir = pathlib.Path(output_dir)
  taken = {path.resolve() for path in files}
  pairs = []
  for path in files:
    target = _output_name(path, output_dir, taken)
    taken.add(target.resolve())
    pairs.append((path, target))
  if overwrite:
    return pairs
  done = _manifest(output_dir)
  kept = [(s, t) for s, t in pairs if t.is_file() and done.get(t.name) == _stamp(s, model)]
  if kept:
    logging.info('Keeping %d output(s) an earlier run wrote from the same inputs; pass '
                 '--overwrite to derain them again.', len(kept))
  pairs = [pair for pair in pairs if pair not in kept]
  _refuse_existing([target for _, target in pairs])
  return pairs


def _stamp(source: pathlib.Path, model: str) -> dict:
  """What identifies an output: its input's resolved path, size and modification time,
  and the model's workdir."""
  found = source.stat()
  return {'source': str(source.resolve()), 'size': found.st_size,
          'mtime_ns': found.st_mtime_ns, 'model': str(pathlib.Path(model).resolve())}


def _manifest(output_dir: pathlib.Path) -> dict:
  """{output name: the input stamp it was written from} (empty when unreadable)."""
  try:
    record = json.loads((output_dir / MANIFEST).read_text())
  except (OSError, ValueError):
    return {}
  return record if isinstance(record, dict) else {}


def _record(target: pathlib.Path, source: pathlib.Path, model: str) -> None:
  """Add `target` to its folder's manifest (written whole, then renamed)."""
  record = {**_manifest(target.parent), target.name: _stamp(source, model)}
  partial = target.parent / f'.{MANIFEST}.{os.getpid()}.partial'
  partial.write_text(json.dumps(record, indent=1))
  partial.replace(target.parent / MANIFEST)


def remove_stale_partials(output_dir) -> list[str]:
  """Remove the partial files in OUTPUT of processes that are gone (a killed run);
  returns their names."""
  output_dir, removed = pathlib.Path(output_dir), []
  for path in output_dir.glob('.*.partial') if output_dir.is_dir() else ():
    found = _PARTIAL.match(path.name)
    if found and not alive(int(found.group(1))):
      path.unlink(missing_ok=True)
      removed.append(path.name)
  if removed:
    logging.warning('Removed %d partial file(s) a stopped run left in %s.', len(removed),
                    output_dir)
  return removed


def _output_name(path: pathlib.Path, output_dir: pathlib.Path, taken: set) -> pathlib.Path:
  """OUTPUT/<stem>.png, or OUTPUT/<stem>_<suffix>.png when that is in `taken` (resolved
  inputs and earlier outputs); ImageError when both are."""
  plain = output_dir / f'{path.stem}.png'
  renamed = output_dir / f'{path.stem}_{path.suffix.lstrip(".").lower()}.png'
  for target in (plain, renamed):
    if target.resolve() not in taken:
      return target
  raise ImageError(f'{path} has no free output name: {plain} and {renamed} are both inputs '
                   'or outputs of this call; rename the input or pass another --output.')


def _refuse_existing(targets: list[pathlib.Path]) -> None:
  """ImageError naming (up to 3 of) the targets that already exist, if any."""
  existing = [str(t) for t in targets if t.exists() or t.is_symlink()]
  if existing:
    more = f' and {len(existing) - 3} more' if len(existing) > 3 else ''
    raise ImageError(f'{len(existing)} output file(s) already exist ({", ".join(existing[:3])}'
                     f'{more}): pass --overwrite to replace them, or another --output.')


def check_output_folder(output_dir, sources: list[pathlib.Path]) -> None:
  """Create OUTPUT if needed and make sure it takes files and has the space of an upper
  bound of the PNGs of `sources`; otherwise a WorkdirError naming the folder and --output."""
  ensure_writable(output_dir, sum(map(png_bytes_bound, sources)), 'the PNGs', '--output')


def derain_files(predict, pairs, tile=256, overlap=32, batch=4, strict=False,
                 model: str = '') -> dict:
  """Derain each (input, output) pair, with a progress bar over tiles on stderr; returns
  {'written': [output paths], 'skipped': {input name: why}}. One photo is held at a time,
  decoded once; an output that cannot be written is an ImageError. Each output written is
  recorded in OUTPUT's manifest with its input and `model` (the workdir)."""
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
      bar.total += count_tiles(photo.height, photo.width, tile, overlap)
      bar.set_description(f'image {index + 1}/{len(pairs)} {source.name}')
      rows = predict_bands(predict, photo.rgb, photo.height, photo.width, tile, overlap,
                           batch, on_tiles=bar.update)
      _write(target, rows, photo)
      _record(target, source, model)
      written.append(str(target))
      del photo, rows  # before the next photo is decoded
  return {'written': written, 'skipped': skipped}


def _write(target: pathlib.Path, rows, photo) -> None:
  """write_photo, its OSError (disk full, permissions) as an ImageError naming the file."""
  try:
    write_photo(target, rows, photo)
  except OSError as error:
    raise ImageError(f'cannot write {target} ({_why(error)}): free some space, fix the '
                     'permissions, or pass another --output.') from None


def _why(error: OSError) -> str:
  """An OSError's reason without its file name (the message names the file)."""
  return error.strerror or str(error)
