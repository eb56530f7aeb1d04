"""TFDS builders (array_record) and the prepare command: bit-exact, offline, TF-free."""

import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from conftest import point_test_sets
from jaxderain.data import tfds_builders
from jaxderain.data.images import ImageError, load_folder, load_image

ROOT = pathlib.Path(__file__).resolve().parents[1]
MANUAL_CATEGORIES = ('celeba', 'div2k', 'manga109', 'urban100', 'folder')


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
  """Builds and reads must stay local: any connection or name lookup fails the test."""
  def refuse(*args, **kwargs):
    raise AssertionError(f'network access attempted: {args}')
  monkeypatch.setattr(socket.socket, 'connect', refuse)
  monkeypatch.setattr(socket, 'create_connection', refuse)
  monkeypatch.setattr(socket, 'getaddrinfo', refuse)


def write_images(folder, seed=0) -> list[str]:
  """Three RGB PNGs, a greyscale PNG, a JPEG (about 20x30) and a broken file; returns
  the names of the readable ones."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i in range(3):
    Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(
        folder / f'rgb{i}.png')
  Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)).save(folder / 'grey.png')
  Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(
      folder / 'photo.jpg', quality=75)
  (folder / 'broken.png').write_bytes(b'not an image')
  return ['grey.png', 'photo.jpg', 'rgb0.png', 'rgb1.png', 'rgb2.png']


def write_pairs(folder, names=('1.png', '2.png', '10.png')):
  rng = np.random.default_rng(1)
  for sub in ('rainy', 'clean'):
    (folder / sub).mkdir(parents=True)
  for i, name in enumerate(names):
    clean = rng.integers(0, 200, (20, 30 + i, 3), dtype=np.uint8)
    Image.fromarray(clean).save(folder / 'clean' / name)
    Image.fromarray(clean + 55).save(folder / 'rainy' / name)


def run_prepare(*args):
  env = {**os.environ, 'PYTHONPATH': str(ROOT)}
  return subprocess.run([sys.executable, '-m', 'jaxderain.data.prepare', *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize('category', MANUAL_CATEGORIES)
def test_category_round_trips_bit_exactly_and_skips_a_broken_file(tmp_path, caplog,
                                                                     category):
  source = tmp_path / 'source'
  names = write_images(source)
  builder = tfds_builders.prepare_category(category, source, tmp_path / 'data')
  assert builder.info.splits['full'].num_examples == len(names)
  assert list(pathlib.Path(builder.data_dir).glob('*.array_record-*'))
  assert 'broken.png' in caplog.text
  images = tfds_builders.load_prepared_category(category, tmp_path / 'data')
  assert list(images) == names
  for name, image in images.items():
    assert image.dtype == np.uint8 and image.shape[2] == 3
    np.testing.assert_array_equal(image, load_image(source / name))  # JPEG kept as decoded


def test_strict_build_fails_naming_the_broken_file(tmp_path):
  write_images(tmp_path / 'source')
  with pytest.raises(ImageError, match='broken.png'):
    tfds_builders.prepare_category('folder', tmp_path / 'source', tmp_path / 'data',
                                   strict=True)
  assert tfds_builders.load_prepared_category('folder', tmp_path / 'data') is None


def test_a_folder_with_no_readable_image_fails(tmp_path):
  (tmp_path / 'source').mkdir()
  (tmp_path / 'source' / 'broken.png').write_bytes(b'not an image')
  with pytest.raises(ImageError, match='None of the 1 image files'):
    tfds_builders.prepare_category('urban100', tmp_path / 'source', tmp_path / 'data')


def test_unprepared_or_unknown_reads_as_none(tmp_path):
  assert tfds_builders.load_prepared_category('urban100', tmp_path) is None
  assert tfds_builders.load_prepared_category('faces', tmp_path) is None
  assert tfds_builders.load_prepared_category('urban100', None) is None
  assert tfds_builders.load_prepared_pairs('rain100l', tmp_path) is None


def test_rebuilding_replaces_the_earlier_build(tmp_path):
  write_images(tmp_path / 'a')
  tfds_builders.prepare_category('folder', tmp_path / 'a', tmp_path / 'data')
  (tmp_path / 'b').mkdir()
  Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / 'b' / 'only.png')
  tfds_builders.prepare_category('folder', tmp_path / 'b', tmp_path / 'data')
  images = tfds_builders.load_prepared_category('folder', tmp_path / 'data')
  assert list(images) == ['only.png']


@pytest.mark.parametrize('paired', ['rain100l', 'rain100h', 'folder'])
def test_pairs_round_trip_bit_exactly_in_number_order(tmp_path, caplog, paired):
  write_pairs(tmp_path / 'source')
  (tmp_path / 'source' / 'rainy' / '4.png').write_bytes(b'broken')
  (tmp_path / 'source' / 'clean' / '4.png').write_bytes(b'broken')
  tfds_builders.prepare_pairs(paired, tmp_path / 'source', tmp_path / 'data')
  assert 'rainy/4.png' in caplog.text  # the pair is skipped
  names, rainy, clean = tfds_builders.load_prepared_pairs(paired, tmp_path / 'data')
  assert names == ['1.png', '2.png', '10.png']
  for name, o, b in zip(names, rainy, clean):
    np.testing.assert_array_equal(o, load_image(tmp_path / 'source' / 'rainy' / name))
    np.testing.assert_array_equal(b, load_image(tmp_path / 'source' / 'clean' / name))


def test_unpaired_or_mismatched_files_are_errors_naming_them(tmp_path):
  write_pairs(tmp_path / 'source')
  (tmp_path / 'source' / 'clean' / '2.png').unlink()
  with pytest.raises(ImageError, match=r'no partner.*rainy/2\.png'):
    tfds_builders.prepare_pairs('rain100l', tmp_path / 'source', tmp_path / 'data')
  small = Image.fromarray(np.zeros((7, 7, 3), np.uint8))
  small.save(tmp_path / 'source' / 'clean' / '2.png')
  with pytest.raises(ImageError, match=r'rainy/2\.png is \(20, 31\) but .*clean/2\.png'):
    tfds_builders.prepare_pairs('rain100l', tmp_path / 'source', tmp_path / 'data')


def test_reading_imports_no_tensorflow(tmp_path):
  """TFDS's own check (import_without_tf_test.py): tensorflow never enters sys.modules;
  here any import of it also raises. (`sys.modules['tensorflow'] = None` cannot be used:
  etils/TFDS then take TensorFlow as loaded and fail.)"""
  names = write_images(tmp_path / 'source')
  tfds_builders.prepare_category('urban100', tmp_path / 'source', tmp_path / 'data')
  script = textwrap.dedent(f"""
      import importlib.abc, importlib.machinery, sys

      class Refuse(importlib.abc.Loader):
        def create_module(self, spec):
          raise ImportError(spec.name + ' was imported')

        def exec_module(self, module):
          pass

      class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
          if name.split('.')[0] == 'tensorflow':
            return importlib.machinery.ModuleSpec(name, Refuse())
          return None

      sys.meta_path.insert(0, NoTensorFlow())
      from jaxderain.data import tfds_builders
      images = tfds_builders.load_prepared_category('urban100', {str(tmp_path / 'data')!r})
      print(sorted(images), 'tensorflow' in sys.modules)
      """)
  result = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, 'PYTHONPATH': str(ROOT)})
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == f'{names} False'


def test_prepare_command_end_to_end(tmp_path):
  names = write_images(tmp_path / 'source')
  data_dir = tmp_path / 'data'
  result = run_prepare('--category=manga109', f'--manual_dir={tmp_path / "source"}',
                       f'--data_dir={data_dir}')
  assert result.returncode == 0, result.stderr
  assert result.stdout == (
      f'Wrote 5 images to {data_dir}/jaxderain_backgrounds/manga109/1.0.0; use them with '
      f'data_dir={data_dir} (config.data_dir or JAXDERAIN_DATA_DIR), read by '
      "tfds_builders.load_prepared_category('manga109', data_dir).\n")
  assert 'broken.png' in result.stderr and 'Generating' in result.stderr  # progress
  assert list(tfds_builders.load_prepared_category('manga109', data_dir)) == names

  write_pairs(tmp_path / 'pairs')
  result = run_prepare('--paired=rain100l', f'--manual_dir={tmp_path / "pairs"}',
                       f'--data_dir={data_dir}')
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith(f'Wrote 3 pairs to {data_dir}/jaxderain_paired_rain/')
  assert tfds_builders.load_prepared_pairs('rain100l', data_dir)[0] == ['1.png', '2.png',
                                                                          '10.png']


@pytest.mark.parametrize('case, message', [
    ('unknown', "Unknown background category 'faces': use one of celeba"),
    ('missing', 'nowhere is not a folder'),
    ('no_manual_dir', "Category 'urban100' is built from a folder of its images"),
    ('empty', 'empty holds no image files'),
    ('unwritable', 'cannot be created (Not a directory): pass a writable folder'),
    ('unpaired', r'no partner in the other sub-folder (clean/3.png)'),
])
def test_prepare_command_bad_input_is_one_clear_line(tmp_path, case, message):
  write_images(tmp_path / 'source')
  write_pairs(tmp_path / 'pairs')
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'pairs' / 'clean' / '3.png')
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'file').write_text('')
  source, data_dir = tmp_path / 'source', tmp_path / 'data'
  args = {
      'unknown': ['--category=faces', f'--manual_dir={source}'],
      'missing': ['--category=urban100', f'--manual_dir={tmp_path / "nowhere"}'],
      'no_manual_dir': ['--category=urban100'],
      'empty': ['--category=urban100', f'--manual_dir={tmp_path / "empty"}'],
      'unwritable': ['--category=urban100', f'--manual_dir={source}',
                     f'--data_dir={tmp_path / "file" / "data"}'],
      'unpaired': ['--paired=rain100l', f'--manual_dir={tmp_path / "pairs"}'],
  }[case]
  if case != 'unwritable':
    args.append(f'--data_dir={data_dir}')
  result = run_prepare(*args)
  assert result.returncode != 0
  assert result.stdout == ''
  assert 'Traceback' not in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert result.stderr.startswith('error: ') and message in result.stderr, result.stderr
  assert not data_dir.exists()  # nothing written


def test_real_urban100_round_trips(data_dir, tmp_path):
  """Skips unless JAXDERAIN_DATA_DIR holds backgrounds/urban100/."""
  folder = data_dir / 'backgrounds' / 'urban100'
  if not folder.is_dir():
    pytest.skip(f'{folder} is not there')
  tfds_builders.prepare_category('urban100', folder, tmp_path)
  expected = load_folder(folder)
  images = tfds_builders.load_prepared_category('urban100', tmp_path)
  assert list(images) == sorted(expected)
  for name, image in images.items():
    np.testing.assert_array_equal(image, expected[name])


def test_a_prepared_category_and_rain100l_feed_training_and_eval(tmp_path):
  """load_category and the eval sets read the TFDS builds in data_dir first."""
  from jaxderain.configs import grid  # pylint: disable=g-import-not-at-top
  from jaxderain import data  # pylint: disable=g-import-not-at-top
  from jaxderain.data.testsets import rain100l  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  source = tmp_path / 'urban_source'
  source.mkdir()
  for i in range(4):
    Image.fromarray(rng.integers(0, 256, (80, 96 + i, 3), dtype=np.uint8)).save(
        source / f'b{i}.png')
  write_pairs(tmp_path / 'pairs_source')
  data_dir = tmp_path / 'data'
  tfds_builders.prepare_category('urban100', source, data_dir)
  tfds_builders.prepare_pairs('rain100l', tmp_path / 'pairs_source', data_dir)

  category = data.load_category('urban100', str(data_dir))
  folder = load_folder(source)
  assert sorted({**category.train, **category.test}) == sorted(folder)
  for name, image in {**category.train, **category.test}.items():
    np.testing.assert_array_equal(image, folder[name])

  config = grid.get_config('resnet,medium,8,category=urban100,scale=smoke')
  config.data_dir = str(data_dir)
  config.eval.image_size = 16  # the generated pairs are 20 pixels high
  pairs = rain100l(config.eval.rain100l, config.data_dir, config.eval.rain100l_limit)
  assert pairs is not None and len(pairs) == 3
  np.testing.assert_allclose(pairs.rain_layer[0],
                             np.clip(pairs.rainy[0] - pairs.clean[0], 0, 1))
  assert [s.name for s in point_test_sets(config)] == [
      'urban100_unseen', 'urban100_rain100L', 'rain100L', 'urban100_train']
