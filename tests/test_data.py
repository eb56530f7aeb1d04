"""Images, categories, exact background sets, paired test sets."""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

from jaxderain import data
from jaxderain.data.backgrounds import split_by_name

ROOT = pathlib.Path(__file__).resolve().parents[1]


def random_images(count, height=50, width=70, seed=0):
  rng = np.random.default_rng(seed)
  return {f'img{i}.png': rng.integers(0, 256, (height + i, width, 3), dtype=np.uint8)
          for i in range(count)}


def test_background_set_is_exact_deterministic_and_distinct():
  images = random_images(3)
  patches = data.background_set(images, 37, 16, seed=5)
  assert patches.shape == (37, 16, 16, 3) and patches.dtype == np.uint8
  np.testing.assert_array_equal(patches, data.background_set(images, 37, 16, seed=5))
  assert not np.array_equal(patches, data.background_set(images, 37, 16, seed=6))
  assert len({p.tobytes() for p in patches}) == 37  # no patch repeated
  # Every patch is a real crop of one of the images.
  first = patches[0]
  found = any((img[r:r + 16, c:c + 16] == first).all() for img in images.values()
              for r in range(img.shape[0] - 15) for c in range(img.shape[1] - 15))
  assert found


def test_background_set_uses_every_position_when_asked_for_all():
  images = {'a.png': np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)}
  patches = data.background_set(images, 12, 3, seed=0)  # (5-3+1) * (6-3+1) = 12 positions
  assert len({p.tobytes() for p in patches}) == 12
  with pytest.raises(data.ImageError, match='13 patches of 3x3.*only 12 distinct positions'):
    data.background_set(images, 13, 3, seed=0)


def test_patch_larger_than_every_image_fails_clearly():
  with pytest.raises(data.ImageError,
                     match='No image is at least 128x128.*smaller size .--config.patch_size'):
    data.background_set(random_images(2), 8, 128, seed=0)


def test_split_is_disjoint_deterministic_and_order_free():
  names = [f'{i}.png' for i in range(20)]
  train, test = split_by_name(names, 0.25)
  assert len(test) == 5 and not set(train) & set(test) and set(train) | set(test) == set(names)
  assert (train, test) == split_by_name(list(reversed(names)), 0.25)


def test_embedded_natural_category_needs_no_download():
  category = data.load_category('natural')
  assert len(category.train) >= 4 and len(category.test) >= 2
  assert not set(category.train) & set(category.test)
  for image in [*category.train.values(), *category.test.values()]:
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_folder_category_skips_a_broken_file(tmp_path, caplog):
  for name, image in random_images(4).items():
    Image.fromarray(image).save(tmp_path / name)
  (tmp_path / 'broken.png').write_bytes(b'not an image')
  category = data.load_category(str(tmp_path))
  assert len(category.train) + len(category.test) == 4
  assert 'broken.png' in caplog.text
  with pytest.raises(data.ImageError, match='broken.png'):
    data.load_category(str(tmp_path), strict=True)


def test_unknown_category_lists_the_options():
  with pytest.raises(data.ImageError, match="Unknown background category 'faces'.*natural"):
    data.load_category('faces')


@pytest.mark.parametrize('mode', ['L', 'LA', 'RGBA', 'P', 'I;16', 'CMYK'])
def test_image_modes_become_rgb8(tmp_path, mode):
  rgb = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
  image = Image.fromarray(rgb)
  if mode == 'I;16':
    image = Image.fromarray((rgb[..., 0].astype(np.uint16) * 257))
    expected = np.repeat(rgb[..., :1], 3, axis=-1)
  else:
    image = image.convert(mode)
    expected = np.array(image.convert('RGB'))
  path = tmp_path / ('x.jpg' if mode == 'CMYK' else 'x.png')
  image.save(path)
  loaded = data.load_image(path)
  assert loaded.shape == (9, 11, 3) and loaded.dtype == np.uint8
  if mode != 'CMYK':  # JPEG is lossy
    np.testing.assert_array_equal(loaded, expected)


@pytest.mark.parametrize('make, message', [
    (lambda p: p.write_bytes(b''), 'empty'),
    (lambda p: p.write_text('hello'), 'not a readable image'),
    (lambda p: p.mkdir(), 'is a directory'),
])
def test_bad_files_get_one_clear_message(tmp_path, make, message):
  path = tmp_path / 'bad.png'
  make(path)
  with pytest.raises(data.ImageError, match=message):
    data.load_image(path)


def test_paired_folder_and_its_errors(tmp_path):
  for sub in ('rainy', 'clean'):
    (tmp_path / sub).mkdir()
  clean = random_images(2, 20, 30)
  for i, image in enumerate(clean.values()):
    Image.fromarray(image).save(tmp_path / 'clean' / f'{i + 1}.png')
    rainy = np.clip(image.astype(int) + 40, 0, 255).astype(np.uint8)
    Image.fromarray(rainy).save(tmp_path / 'rainy' / f'{i + 1}.png')
  pairs = data.paired_folder('pairs', tmp_path)
  assert len(pairs) == 2
  layer = pairs.rain_layer[0]
  np.testing.assert_allclose(layer, np.clip(pairs.rainy[0] - pairs.clean[0], 0, 1))
  Image.fromarray(clean['img0.png']).save(tmp_path / 'rainy' / '9.png')
  with pytest.raises(data.ImageError, match='no partner.*9.png'):
    data.paired_folder('pairs', tmp_path)


def test_heldout_synthetic_set_is_fixed_by_its_seed():
  images = random_images(2, 80, 90)
  heldout = lambda: data.with_synthetic_rain(
      't', data.background_set(images, 3, 32, seed=1, test_set=True), seed=1)
  a, b = heldout(), heldout()
  assert len(a) == 3 and a.rainy[0].shape == (32, 32, 3)
  np.testing.assert_array_equal(a.rainy[2], b.rainy[2])
  np.testing.assert_allclose(a.rainy[0], np.clip(a.clean[0] + a.rain_layer[0], 0, 1))


def test_real_rain100l_pairs(data_dir):
  pairs = data.paired_folder('rain100L', data_dir / 'rain100L', limit=5)
  assert len(pairs) == 5
  layer = np.concatenate([r.ravel() for r in pairs.rain_layer])
  assert 0.005 < layer.mean() < 0.1


def test_exif_rotation_is_applied(tmp_path):
  upright = np.zeros((10, 20, 3), np.uint8)
  upright[:, :5] = 255  # a white band on the left
  exif = Image.Exif()
  exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
  Image.fromarray(upright).save(tmp_path / 'r.jpg', exif=exif, quality=100)
  loaded = data.load_image(tmp_path / 'r.jpg')
  assert loaded.shape == (20, 10, 3)
  assert loaded[:5].mean() > 200 and loaded[-5:].mean() < 50  # the band is now on top


def test_truncated_file_is_one_clear_error(tmp_path):
  Image.fromarray(random_images(1)['img0.png']).save(tmp_path / 'full.png')
  content = (tmp_path / 'full.png').read_bytes()
  (tmp_path / 'cut.png').write_bytes(content[:len(content) // 2])
  with pytest.raises(data.ImageError, match='cut.png is not a readable image.*truncated'):
    data.load_image(tmp_path / 'cut.png')


def test_folder_with_a_directory_named_like_an_image(tmp_path, caplog):
  for name, image in random_images(2).items():
    Image.fromarray(image).save(tmp_path / name)
  (tmp_path / 'album.jpg').mkdir()
  images = data.load_folder(tmp_path)
  assert sorted(images) == ['img0.png', 'img1.png']
  assert 'album.jpg: it is a folder, not an image file' in caplog.text


def test_empty_folder_is_one_clear_error(tmp_path):
  with pytest.raises(data.ImageError, match='holds no image files'):
    data.load_folder(tmp_path)


def test_unreadable_file_is_one_clear_error():
  folder = pathlib.Path(tempfile.mkdtemp())
  try:
    folder.chmod(0o755)
    path = folder / 'locked.png'
    Image.fromarray(random_images(1)['img0.png']).save(path)
    path.chmod(0)
    if os.geteuid() != 0:
      with pytest.raises(data.ImageError, match='not readable \\(permissions\\)'):
        data.load_image(path)
      return
    # As root every file is readable: load it as an unprivileged user instead.
    if not shutil.which('setpriv'):
      pytest.skip('running as root without setpriv')
    code = ('import sys; from jaxderain.data import images\n'
            'try:\n  images.load_image(sys.argv[1])\nexcept images.ImageError as e:\n'
            '  print(e)')
    result = subprocess.run(
        ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', sys.executable, '-c',
         code, str(path)], capture_output=True, text=True, timeout=120,
        check=False)
    if result.returncode != 0 and 'Permission denied' in result.stderr:
      pytest.skip('the unprivileged user cannot run this Python')
    assert 'not readable (permissions)' in result.stdout, result.stderr
  finally:
    shutil.rmtree(folder)


def test_small_images_skip_or_upscale():
  faces = random_images(3, 89, 109)  # 89..91 x 109, like the CelebA copy
  with pytest.raises(data.ImageError, match='upscale_small_images'):
    data.background_set(faces, 8, 128, seed=0)
  upscaled = data.upscale_small(faces, 128)
  assert all(min(image.shape[:2]) == 128 for image in upscaled.values())
  assert data.background_set(upscaled, 8, 128, seed=0).shape == (8, 128, 128, 3)


@pytest.mark.parametrize('what', ['rain', 'backgrounds'])
def test_show_writes_a_panel(tmp_path, what):
  out = tmp_path / f'{what}.png'
  result = subprocess.run([sys.executable, '-m', 'jaxderain.data.show', f'--what={what}',
                           f'--out={out}', '--samples=2', '--size=32'], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  with Image.open(out) as panel:
    rows = 8 if what == 'rain' else 1  # 4 ranges x (R, B+R), or one category
    assert panel.size[1] == rows * 34
