"""The derain command: outputs never replace inputs, nor existing files without --overwrite;
the output folder is checked before any work; animated images are refused; tiles run band
by band and blend as over the whole image at once; PNGs are written piece by piece and
read back as PIL writes them; memory grows by about the decoded image. Marker: reliability."""

import hashlib
import json
import os
import pathlib
import struct
import subprocess
import sys
import types
import zlib

import numpy as np
import pytest
import skimage
from PIL import Image

from conftest import error_lines, run_commands
from jaxderain import workdir as workdir_lock
from jaxderain.data import ImageError, images
from jaxderain.eval import photos, tiles

pytestmark = pytest.mark.reliability
ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL_TILES = ('--tile=64', '--overlap=16')


@pytest.fixture
def workdir(smoke_workdir):
  return smoke_workdir


def derain(*args):
  return derain_runs(args)[0]


def derain_runs(*argvs):
  """Several derain command lines, run in one process."""
  return run_commands('jaxderain.derain', *argvs)


def sha256(path) -> str:
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def photo(offset: int = 0) -> np.ndarray:
  """A uint8 (48, 64, 3) crop of scikit-image's coffee photo, `offset` rows down."""
  return skimage.data.coffee()[100 + offset:148 + offset, 200:264]


def written(folder) -> list[str]:
  """The names in `folder` other than derain's resume record."""
  return sorted(p.name for p in pathlib.Path(folder).iterdir() if p.name != photos.MANIFEST)


def save_photo(path, offset: int = 0) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(photo(offset)).save(path)
  return path


# Outputs never land on inputs, on each other, or on existing files.

def test_outputs_into_the_input_folder_leave_every_input_byte_identical(workdir, tmp_path):
  save_photo(tmp_path / 'a.jpg')
  save_photo(tmp_path / 'a.png', offset=60)
  before = {name: sha256(tmp_path / name) for name in ('a.jpg', 'a.png')}
  result = derain(f'--workdir={workdir}', f'--input={tmp_path}', f'--output={tmp_path}',
                  *SMALL_TILES)
  assert result.returncode == 0, result.stderr[-3000:]
  assert {name: sha256(tmp_path / name) for name in before} == before
  summary = json.loads(result.stdout.strip().splitlines()[-1])
  assert summary['written'] == 2 and summary['skipped'] == {}
  outputs = [name for name in written(tmp_path) if name not in before]
  assert outputs == ['a_jpg.png', 'a_png.png']
  assert all(Image.open(tmp_path / name).size == (64, 48) for name in outputs)


def test_plan_renames_outputs_that_meet_an_input_or_each_other(tmp_path):
  for name in ('a.jpg', 'a.png', 'b.jpg', 'b.jpeg'):
    save_photo(tmp_path / 'in' / name)
  pairs = photos.plan(tmp_path / 'in', tmp_path / 'out')
  assert [(s.name, t.name) for s, t in pairs] == [
      ('a.jpg', 'a.png'), ('a.png', 'a_png.png'), ('b.jpeg', 'b.png'), ('b.jpg', 'b_jpg.png')]
  same = photos.plan(tmp_path / 'in', tmp_path / 'in')
  assert [t.name for _, t in same] == ['a_jpg.png', 'a_png.png', 'b.png', 'b_jpg.png']
  save_photo(tmp_path / 'in' / 'a_jpg.png')  # a.jpg's renamed output is an input too
  with pytest.raises(ImageError, match=r'a\.jpg has no free output name: .*a\.png and .*'
                                       r'a_jpg\.png are both inputs or outputs'):
    photos.plan(tmp_path / 'in', tmp_path / 'in')


def test_existing_outputs_are_named_up_to_three(tmp_path):
  for k in range(5):
    save_photo(tmp_path / 'in' / f'{k}.jpg')
    save_photo(tmp_path / 'out' / f'{k}.png')
  with pytest.raises(ImageError) as error:
    photos.plan(tmp_path / 'in', tmp_path / 'out')
  message = str(error.value)
  assert message.startswith('5 output file(s) already exist') and 'and 2 more' in message
  assert [f'{k}.png' in message for k in range(5)] == [True] * 3 + [False] * 2
  assert len(photos.plan(tmp_path / 'in', tmp_path / 'out', overwrite=True)) == 5


def test_an_existing_output_is_refused_before_any_work_and_replaced_with_overwrite(
    workdir, tmp_path):
  source = save_photo(tmp_path / 'in' / 'photo.jpg')
  target = tmp_path / 'out' / 'photo.png'
  target.parent.mkdir()
  target.write_bytes(b"the user's own file")
  # A workdir that does not exist: refusing first shows the model was never restored.
  refused, replaced = derain_runs(
      [f'--workdir={tmp_path / "nowhere"}', f'--input={source}', f'--output={target.parent}'],
      [f'--workdir={workdir}', f'--input={source}', f'--output={target.parent}',
       '--overwrite', *SMALL_TILES])
  lines = error_lines(refused)
  assert refused.returncode != 0 and len(lines) == 1, refused.stderr[-3000:]
  assert str(target) in lines[0] and '--overwrite' in lines[0]
  assert replaced.returncode == 0, replaced.stderr[-3000:]
  assert Image.open(target).size == (64, 48)
  assert written(target.parent) == ['photo.png']  # no probe or partial


# The output folder is checked before any work.

def test_an_unusable_output_folder_is_one_line_before_any_work(tmp_path):
  source = save_photo(tmp_path / 'in' / 'photo.jpg')
  regular = tmp_path / 'file'
  regular.write_text('not a folder')
  unusable = [regular / 'sub', regular]
  locked = tmp_path / 'locked'
  locked.mkdir(mode=0o500)
  if os.geteuid() != 0:  # root writes through permissions
    unusable.append(locked)
  if pathlib.Path('/proc/self').is_dir():  # a folder that takes no new file, even from root
    unusable.append(pathlib.Path('/proc/self'))
  nowhere = f'--workdir={tmp_path / "nowhere"}'  # reached only once the checks pass
  *results, usable = derain_runs(
      *[[nowhere, f'--input={source}', f'--output={output}'] for output in unusable],
      [nowhere, f'--input={source}', f'--output={tmp_path / "new" / "out"}'])
  for output, result in zip(unusable, results):
    lines = error_lines(result)
    assert result.returncode != 0 and len(lines) == 1, result.stderr[-3000:]
    assert f'{output} is not writable' in lines[0] and 'pass a --output' in lines[0]
  assert 'config.json does not exist' in usable.stderr
  assert list((tmp_path / 'new' / 'out').iterdir()) == []  # the probe file is gone


def test_an_output_folder_without_room_for_the_pngs_is_refused(tmp_path, monkeypatch):
  source = save_photo(tmp_path / 'photo.jpg')
  assert images.png_bytes_bound(source) > 48 * (64 * 3 + 1)
  monkeypatch.setattr(workdir_lock.shutil, 'disk_usage',
                      lambda path: types.SimpleNamespace(free=0))
  with pytest.raises(workdir_lock.WorkdirError, match=r'disk of .*out has 0 MiB free but the '
                     r'PNGs need about 0 MiB: free space or pass a --output'):
    photos.check_output_folder(tmp_path / 'out', [source])


# Animated images are bad input files.

def test_an_animated_image_is_skipped_by_name_and_frame_count_and_strict_stops(
    workdir, tmp_path):
  folder = tmp_path / 'in'
  save_photo(folder / 'still.png')
  frames = [Image.fromarray(photo(offset=20 * k)) for k in range(3)]
  frames[0].save(folder / 'moving.png', save_all=True, append_images=frames[1:])  # APNG
  frames[0].save(tmp_path / 'moving.gif', save_all=True, append_images=frames[1:])
  animated = (folder / 'moving.png', tmp_path / 'moving.gif')
  assert [Image.open(path).n_frames for path in animated] == [3, 3]
  result, gif, strict = derain_runs(
      [f'--workdir={workdir}', f'--input={folder}', f'--output={tmp_path / "out"}',
       *SMALL_TILES],
      [f'--workdir={workdir}', f'--input={tmp_path / "moving.gif"}',
       f'--output={tmp_path / "gif"}', *SMALL_TILES],
      [f'--workdir={workdir}', f'--input={folder}', f'--output={tmp_path / "strict"}',
       '--strict', *SMALL_TILES])
  assert result.returncode == 0, result.stderr[-3000:]
  assert list(json.loads(result.stdout.strip().splitlines()[-1])['skipped']) == ['moving.png']
  assert 'moving.png is an animated image (3 frames): extract the frames' in result.stderr
  assert written(tmp_path / 'out') == ['still.png']
  assert gif.returncode != 0 and 'moving.gif is an animated image (3 frames)' in gif.stderr
  assert written(tmp_path / 'gif') == []
  lines = error_lines(strict)
  assert strict.returncode != 0 and len(lines) == 1
  assert 'moving.png is an animated image (3 frames)' in lines[0]


# Band by band tiling.

def blend_whole_image(predict, image, tile, overlap, batch_size):
  """The straightforward tiling: pad the whole image, sum every weighted tile output and
  weight into image-sized float32 arrays, divide."""
  height, width = image.shape[:2]
  pad_h, pad_w = max(tile - height, 0), max(tile - width, 0)
  mode = 'reflect' if pad_h < height and pad_w < width else 'edge'
  padded = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)
  corners = [(r, c) for r in tiles.tile_starts(padded.shape[0], tile, overlap)
             for c in tiles.tile_starts(padded.shape[1], tile, overlap)]
  weights = tiles.blend_weights(tile, overlap)[..., None]
  total = np.zeros(padded.shape, np.float32)
  weight_sum = np.zeros(padded.shape[:2] + (1,), np.float32)
  for start in range(0, len(corners), batch_size):
    chunk = corners[start:start + batch_size]
    outputs = predict(np.stack([padded[r:r + tile, c:c + tile] for r, c in chunk]))
    for (r, c), output in zip(chunk, outputs):
      total[r:r + tile, c:c + tile] += output * weights
      weight_sum[r:r + tile, c:c + tile] += weights
  return (total / weight_sum)[:height, :width]


def tile_model(tiles_in):
  """Each output pixel depends on its whole tile, so the blend shows in the result."""
  return np.tanh(3 * tiles_in - tiles_in.mean(axis=(1, 2, 3), keepdims=True))


@pytest.mark.parametrize('height, width, tile, overlap, batch_size', [
    (10, 7, 32, 8, 3),  # smaller than one tile: edge padded
    (20, 100, 32, 8, 4),  # one tile high: reflected
    (10, 100, 32, 8, 4),  # one tile high, too low to reflect: edge padded
    (100, 37, 32, 0, 1), (129, 300, 64, 16, 3), (256, 256, 64, 21, 2), (301, 70, 32, 15, 5)])
def test_band_by_band_tiling_equals_blending_the_whole_image(height, width, tile, overlap,
                                                             batch_size):
  image = np.random.default_rng(height * width).random((height, width, 3), np.float32)
  expected = blend_whole_image(tile_model, image, tile, overlap, batch_size)
  np.testing.assert_allclose(tiles.predict_tiled(tile_model, image, tile, overlap, batch_size),
                             expected, rtol=1e-6, atol=1e-6)
  calls = []
  pieces = tiles.predict_bands(lambda t: calls.append(len(t)) or tile_model(t),
                               lambda t, l, b, r: image[t:b, l:r], height, width, tile,
                               overlap, batch_size)
  first = next(pieces)
  calls_before_first = len(calls)
  rest = list(pieces)
  assert all(len(p) <= tiles.PIECE_ROWS and p.shape[1:] == (width, 3) for p in [first, *rest])
  np.testing.assert_allclose(np.concatenate([first, *rest]), expected, rtol=1e-6, atol=1e-6)
  assert set(calls) == {batch_size}  # one shape: one compilation
  assert len(calls) * batch_size >= tiles.count_tiles(height, width, tile, overlap)
  if len(tiles.tile_starts(max(height, tile), tile, overlap)) > 2:
    assert calls_before_first < len(calls)  # rows leave before the last tiles run


def test_photo_boxes_follow_the_exif_orientation(tmp_path):
  stored = np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8)
  for orientation in range(1, 9):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f'{orientation}.jpg'
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    upright = images.load_image(path).astype(np.float32) / 255  # PIL's exif_transpose
    read = images.read_photo(path)
    assert (read.height, read.width) == upright.shape[:2]
    np.testing.assert_array_equal(read.rgb(3, 5, 20, 30), upright[3:20, 5:30])
    np.testing.assert_array_equal(read.rgb(0, 0, read.height, read.width), upright)


# PNGs written piece by piece.

def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
  """(type, data) of each chunk of a PNG file, checking the signature and every CRC."""
  assert data[:8] == b'\x89PNG\r\n\x1a\n'
  chunks, at = [], 8
  while at < len(data):
    length, kind = struct.unpack('>I4s', data[at:at + 8])
    body = data[at + 8:at + 8 + length]
    assert struct.unpack('>I', data[at + 8 + length:at + 12 + length])[0] == zlib.crc32(
        kind + body)
    chunks.append((kind, body))
    at += 12 + length
  return chunks


@pytest.mark.parametrize('channels', [1, 2, 3, 4])
@pytest.mark.parametrize('bits', [8, 16])
def test_png_writer_reads_back_as_pil_writes(tmp_path, channels, bits):
  dtype = np.uint16 if bits == 16 else np.uint8
  array = np.random.default_rng(channels).integers(0, 2 ** bits, (37, 23, channels), dtype)
  path = tmp_path / 'mine.png'
  images.write_png(path, [array[:5], array[5:6], array[6:]], 37, 23, channels, bits)
  chunks = png_chunks(path.read_bytes())
  assert chunks[0][0] == b'IHDR' and chunks[-1] == (b'IEND', b'')
  colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]  # grey, grey + alpha, RGB, RGBA
  assert struct.unpack('>IIBB', chunks[0][1][:10]) == (23, 37, bits, colour_type)
  raw = zlib.decompress(b''.join(body for kind, body in chunks if kind == b'IDAT'))
  lines = np.frombuffer(raw, np.uint8).reshape(37, -1)
  assert not lines[:, 0].any()  # filter type 0
  np.testing.assert_array_equal(lines[:, 1:].view(f'>u{bits // 8}').reshape(array.shape), array)
  mine = np.asarray(Image.open(path))
  if bits == 8 or channels == 1:  # what PIL writes itself
    Image.fromarray(array.squeeze(-1) if channels == 1 else array).save(tmp_path / 'pil.png')
    theirs = Image.open(tmp_path / 'pil.png')
    assert Image.open(path).mode == theirs.mode
    np.testing.assert_array_equal(mine, np.asarray(theirs))
  else:  # PIL writes no 16-bit colour and reads it at 8 bits (grey + alpha as RGBA)
    high = (array >> 8).astype(np.uint8)
    np.testing.assert_array_equal(mine, high[..., [0, 0, 0, 1]] if channels == 2 else high)


def test_a_png_cut_short_leaves_no_file(tmp_path):
  path = tmp_path / 'short.png'
  with pytest.raises(ValueError, match='declared 10 rows high but got 4'):
    images.write_png(path, [np.zeros((4, 3, 3), np.uint8)], 10, 3, 3)
  assert list(tmp_path.iterdir()) == []


# Memory.

@pytest.mark.skipif(not pathlib.Path('/proc/self/status').exists(), reason='needs VmHWM')
def test_memory_grows_by_about_the_decoded_image(workdir, tmp_path):
  """Derain a 3000x2000 JPEG and a 1x1 one in fresh processes (benchmarks/derain_memory.py).
  Allowed growth: 2.5x the image as uint8 RGB (PIL holds it at 4 bytes a pixel), plus one
  band of blend sums (256 rows x 3000 px x 16 bytes, float32 RGB and weight: 12 MB, growing
  with the width only), plus 20 MB of run-to-run noise (the 1x1 run's own peak spread over
  26 MB in 7 runs on a 2-core machine: XLA compilation and thread timing). Measured here:
  32-52 MB; holding the image in float32 several times over, as before, grew by 350 MB."""
  out = tmp_path / 'memory.json'
  result = subprocess.run([sys.executable, 'benchmarks/derain_memory.py', f'--workdir={workdir}',
                           '--size=3000x2000', f'--out={out}'], cwd=ROOT, capture_output=True,
                          text=True, timeout=1200, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  measured = json.loads(out.read_text())
  decoded = 3000 * 2000 * 3
  assert measured['decoded_uint8_bytes'] == decoded
  limit = 2.5 * decoded + 256 * 3000 * 16 + 20e6
  assert measured['growth_bytes'] < limit, measured


def test_an_image_too_large_for_pil_is_one_line(tmp_path):
  chunk = lambda kind, data: (struct.pack('>I', len(data)) + kind + data +
                              struct.pack('>I', zlib.crc32(kind + data)))
  header = struct.pack('>IIBBBBB', 30000, 30000, 8, 2, 0, 0, 0)  # 900 MP, RGB: no pixels
  path = tmp_path / 'huge.png'
  path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IEND', b''))
  with pytest.raises(ImageError, match='huge.png has more pixels than PIL opens safely'):
    images.read_photo(path)


@pytest.mark.reliability
def test_fifos_devices_and_symlink_loops_are_named_and_skipped_before_any_read(tmp_path, caplog):
  save_photo(tmp_path / 'in' / 'good.jpg')
  os.mkfifo(tmp_path / 'in' / 'pipe.png')  # reading it would block for ever
  (tmp_path / 'in' / 'loop.png').symlink_to(tmp_path / 'in' / 'loop.png')
  pairs = photos.plan(tmp_path / 'in', tmp_path / 'out')
  assert [s.name for s, _ in pairs] == ['good.jpg']
  assert 'pipe.png: it is a FIFO' in caplog.text and 'loop.png: it is a symlink loop' in \
      caplog.text
  for bad, kind in (('pipe.png', 'a FIFO'), ('loop.png', 'a symlink loop')):
    with pytest.raises(ImageError, match=f'{bad} is {kind}, not an image file'):
      photos.plan(tmp_path / 'in' / bad, tmp_path / 'out')


@pytest.mark.reliability
def test_a_stopped_run_resumes_keeping_finished_outputs_and_removing_partials(
    workdir, tmp_path):
  for name in ('a.jpg', 'b.jpg'):
    save_photo(tmp_path / 'in' / name)
  out = tmp_path / 'out'
  first, = derain_runs([f'--workdir={workdir}', f'--input={tmp_path / "in" / "a.jpg"}',
                        f'--output={out}', *SMALL_TILES])
  assert first.returncode == 0, first.stderr[-2000:]
  stale = out / f'.b.png.{2**22 + 7}.partial'  # a killed run's half-written PNG
  stale.write_bytes(b'\x89PNG half')
  written = (out / 'a.png').read_bytes()
  resumed, again = derain_runs(
      [f'--workdir={workdir}', f'--input={tmp_path / "in"}', f'--output={out}', *SMALL_TILES],
      [f'--workdir={workdir}', f'--input={tmp_path / "in"}', f'--output={out}', *SMALL_TILES])
  assert resumed.returncode == 0 and json.loads(resumed.stdout)['written'] == 1
  assert not stale.exists() and (out / 'a.png').read_bytes() == written  # kept, not redone
  assert sorted(p.name for p in out.iterdir()) == ['.derain.json', 'a.png', 'b.png']
  assert again.returncode == 0 and json.loads(again.stdout)['written'] == 0
  os.utime(tmp_path / 'in' / 'a.jpg', ns=(1, 1))  # the input changed: a.png is not its output
  refused, = derain_runs([f'--workdir={workdir}', f'--input={tmp_path / "in"}',
                          f'--output={out}', *SMALL_TILES])
  assert refused.returncode != 0 and 'a.png' in refused.stderr and '--overwrite' in \
      refused.stderr


def png_samples(path) -> np.ndarray:
  """A PNG written by images.write_png (filter 0) as its stored samples (H, W, channels)."""
  chunks = png_chunks(pathlib.Path(path).read_bytes())
  width, height, bits, colour_type = struct.unpack('>IIBB', chunks[0][1][:10])
  channels = {0: 1, 4: 2, 2: 3, 6: 4}[colour_type]
  raw = zlib.decompress(b''.join(body for kind, body in chunks if kind == b'IDAT'))
  lines = np.frombuffer(raw, np.uint8).reshape(height, -1)[:, 1:]
  return lines.view(f'>u{bits // 8}').reshape(height, width, channels)


def test_a_16_bit_grey_png_with_a_transparent_value_keeps_16_bits_and_its_alpha(tmp_path):
  grey = np.random.default_rng(3).integers(1, 65536, (12, 9)).astype(np.uint16)
  grey[2:5, 3:7] = 0  # the transparent value (tRNS)
  Image.fromarray(grey).save(tmp_path / 'in.png', transparency=0)
  photo16 = images.read_photo(tmp_path / 'in.png')
  images.write_photo(tmp_path / 'out.png', [photo16.rgb(0, 0, 12, 9)], photo16)
  assert struct.unpack('>BB', png_chunks((tmp_path / 'out.png').read_bytes())[0][1][8:10]) == (
      16, 4)  # 16-bit grey + alpha
  samples = png_samples(tmp_path / 'out.png')
  np.testing.assert_array_equal(samples[..., 0], grey)
  np.testing.assert_array_equal(samples[..., 1], np.where(grey == 0, 0, 65535))
