"""Reliability: kills, SIGTERM, interrupted and corrupt checkpoints, config changes, NaNs,
unwritable workdirs, and the derain command on bad input. Marker: reliability."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage
from PIL import Image

from conftest import run_commands
from jaxderain import errors, experiment
from jaxderain import workdir as workdir_lock
from jaxderain.configs import grid
from jaxderain.data import read_photo
from jaxderain.eval import tiles
from jaxderain.train import checkpoints, loop

pytestmark = pytest.mark.reliability
ROOT = pathlib.Path(__file__).resolve().parents[1]
# A smoke run long enough to be killed mid-way, saving every 10 of its 120 steps.
ARG = 'resnet,medium,16,scale=smoke'
FLAGS = ['--config.total_steps=120', '--config.checkpoint_every=10', '--config.log_every=10',
         '--config.keep_checkpoints=3']


def smoke_config(**overrides):
  config = grid.get_config(ARG)
  for key, value in overrides.items():
    config[key] = value
  return config


def start(workdir, *extra):
  return subprocess.Popen([sys.executable, 'launch.py', f'--config=configs/grid.py:{ARG}',
                           f'--workdir={workdir}', *FLAGS, *extra], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(workdir, *extra):
  process = start(workdir, *extra)
  out, err = process.communicate(timeout=300)
  assert process.returncode == 0, err[-3000:]
  return err


def final_state(workdir):
  config = smoke_config(total_steps=120)
  _, _, template, _ = experiment.state_template(config)
  manager = checkpoints.checkpoint_manager(workdir)
  assert manager.latest_step() == 120
  return checkpoints.restore(manager, template)


def assert_bit_identical(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def start_paused(workdir, moment, step, log):
  """launch.py as `start` runs it, pausing at `moment` of checkpoint `step`
  (tests/paused_launch.py); stderr goes to the file `log`. Returns (process, marker)."""
  marker = pathlib.Path(workdir).parent / f'{pathlib.Path(workdir).name}.{moment}-{step}'
  with open(log, 'w') as stderr:
    process = subprocess.Popen(
        [sys.executable, 'tests/paused_launch.py', moment, str(step), str(marker),
         f'--config=configs/grid.py:{ARG}', f'--workdir={workdir}', *FLAGS], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=stderr, text=True)
  return process, marker


def wait_for(marker, process, log, timeout=600):
  """Wait until the paused run has created `marker`; fail with its log if it ends
  first. (`timeout` only guards against a hang: the run cannot finish while paused.)"""
  deadline = time.monotonic() + timeout
  while not marker.exists():
    if process.poll() is not None or time.monotonic() > deadline:
      process.kill()
      pytest.fail(f'the run ended (code {process.poll()}) before pausing:\n'
                  f'{pathlib.Path(log).read_text()[-3000:]}')
    time.sleep(0.01)


def kill_at(workdir, moment, step, log):
  """SIGKILL a run paused at `moment` of checkpoint `step`."""
  process, marker = start_paused(workdir, moment, step, log)
  try:
    wait_for(marker, process, log)
  finally:
    process.kill()
    process.wait()


def temporary_steps(workdir):
  """Steps of orbax's temporary (uncommitted) checkpoint folders."""
  return sorted(int(p.name.split('.')[0]) for p in (pathlib.Path(workdir) / 'checkpoints')
                .iterdir() if 'orbax-checkpoint-tmp' in p.name)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """An uninterrupted run: its workdir and final state."""
  workdir = tmp_path_factory.mktemp('reference')
  finish(workdir)
  return workdir, final_state(workdir)


def test_same_config_and_seed_give_bit_identical_parameters(reference, tmp_path):
  finish(tmp_path)
  assert_bit_identical(final_state(tmp_path), reference[1])


def test_sigkill_at_several_moments_then_resume_is_bit_identical(reference, tmp_path):
  workdir = tmp_path / 'run'
  latest = lambda: checkpoints.checkpoint_manager(workdir).latest_step()
  # Killed while checkpoint 20 is written but not yet renamed into place: step 10 is the
  # latest, and the resumed run starts there.
  kill_at(workdir, 'written', 20, tmp_path / 'first.log')
  assert latest() == 10 and temporary_steps(workdir) == [20]
  # Killed just after checkpoint 50 is in place.
  kill_at(workdir, 'committed', 50, tmp_path / 'second.log')
  assert 'Resuming from checkpoint at step 10' in (tmp_path / 'second.log').read_text()
  assert latest() == 50
  # Killed during a later write.
  kill_at(workdir, 'written', 80, tmp_path / 'third.log')
  assert 'Resuming from checkpoint at step 50' in (tmp_path / 'third.log').read_text()
  assert latest() == 70 and 80 in temporary_steps(workdir)
  err = finish(workdir)
  assert 'Resuming from checkpoint at step 70' in err
  assert_bit_identical(final_state(workdir), reference[1])


def test_sigterm_saves_the_current_step_exits_143_and_resumes(reference, tmp_path):
  workdir, log = tmp_path / 'run', tmp_path / 'stopped.log'
  # The run waits after saving step 20 until SIGTERM has been handled: it cannot end
  # first, and stops at the next step.
  process, marker = start_paused(workdir, 'saved', 20, log)
  try:
    wait_for(marker, process, log)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=300) == errors.PREEMPTED_EXIT_CODE, log.read_text()[-2000:]
  finally:
    process.kill()
  err = log.read_text()
  assert 'stopped by SIGTERM at step 21;' in err and 'Traceback' not in err
  assert checkpoints.checkpoint_manager(workdir).latest_step() == 21
  err = finish(workdir)
  assert 'Resuming from checkpoint at step 21' in err
  assert_bit_identical(final_state(workdir), reference[1])


def test_an_interrupted_write_is_never_the_latest(reference, tmp_path):
  shutil.copytree(reference[0] / 'checkpoints', tmp_path / 'checkpoints')
  shutil.rmtree(tmp_path / 'checkpoints' / '120')
  # What a save killed mid-write leaves: orbax's temporary folder of step 120.
  shutil.copytree(tmp_path / 'checkpoints' / '110',
                  tmp_path / 'checkpoints' / '120.orbax-checkpoint-tmp-1795790000')
  assert checkpoints.checkpoint_manager(tmp_path).latest_step() == 110
  shutil.copy(reference[0] / 'config.json', tmp_path / 'config.json')
  err = finish(tmp_path)
  assert 'Resuming from checkpoint at step 110' in err
  assert_bit_identical(final_state(tmp_path), reference[1])


def test_a_changed_config_is_refused_naming_the_fields(reference, tmp_path):
  shutil.copytree(reference[0], tmp_path / 'w')
  workdir = tmp_path / 'w'
  config = smoke_config(total_steps=120, learning_rate=1e-3, num_patches=8)
  with pytest.raises(errors.ConfigError) as error:
    experiment.train(config, str(workdir))
  message = str(error.value)
  assert 'learning_rate: 0.0002 -> 0.001' in message and 'num_patches: 16 -> 8' in message
  assert '--allow_config_change' in message
  # Fields that do not change training may differ; eval can then run.
  same = smoke_config(total_steps=120, checkpoint_every=10)
  same.eval.num_images = 2
  same.data_dir = str(tmp_path / 'the same data elsewhere')
  assert workdir_lock.config_changes(same, workdir) == []
  # On purpose: continues, and keeps the old config next to the new one.
  longer = smoke_config(total_steps=130, checkpoint_every=10)
  state, _ = experiment.train(longer, str(workdir), allow_config_change=True)
  assert int(state.step) == 130
  assert (workdir / 'config.before-step-120.json').is_file()
  assert json.loads((workdir / 'config.json').read_text())['total_steps'] == 130


@pytest.mark.parametrize('quantity, message', [('loss', 'the loss'),
                                               ('grad_norm', 'the gradients')])
def test_a_non_finite_value_stops_with_the_last_good_checkpoint(tmp_path, quantity, message):
  config = smoke_config()
  state, train_step, backgrounds = experiment.build_training(config)

  def breaks_at_25(state, backgrounds):
    state, metrics = train_step(state, backgrounds)
    bad = jnp.where(state.step >= 25, jnp.nan, metrics[quantity])
    return state, {**metrics, quantity: bad}

  with pytest.raises(loop.NonFiniteError) as error:
    loop.fit(state, breaks_at_25, backgrounds, workdir=str(tmp_path), total_steps=40,
             log_every=10, checkpoint_every=10, keep_checkpoints=3,
             mesh=experiment.device_mesh())
  assert f'{message} became non-finite at step 25' in str(error.value)
  assert 'last good checkpoint: step 20' in str(error.value)
  assert checkpoints.checkpoint_manager(tmp_path).all_steps() == [10, 20]


def test_a_failing_save_names_the_last_good_checkpoint(tmp_path, monkeypatch):
  config = smoke_config()
  state, train_step, backgrounds = experiment.build_training(config)
  real_save = checkpoints.ocp.CheckpointManager.save

  def disk_full_at_30(self, step, *args, **kwargs):
    if step == 30:
      raise OSError(28, 'No space left on device')
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(checkpoints.ocp.CheckpointManager, 'save', disk_full_at_30)
  with pytest.raises(checkpoints.CheckpointError) as error:
    loop.fit(state, train_step, backgrounds, workdir=str(tmp_path), total_steps=40,
             log_every=10, checkpoint_every=10, keep_checkpoints=3,
             mesh=experiment.device_mesh())
  assert 'No space left on device' in str(error.value)
  assert 'The last good checkpoint is step 20' in str(error.value)
  _, _, template, _ = experiment.state_template(config)
  assert int(checkpoints.restore(checkpoints.checkpoint_manager(tmp_path), template).step) == 20


def test_an_unwritable_workdir_or_full_disk_fails_before_training(tmp_path, monkeypatch):
  blocker = tmp_path / 'file'
  blocker.write_text('not a folder')
  with pytest.raises(ValueError, match='is not writable'):  # a one-line user error
    experiment.train(smoke_config(), str(blocker / 'run'))
  monkeypatch.setattr(workdir_lock.shutil, 'disk_usage',
                      lambda path: types.SimpleNamespace(total=1, used=0, free=1))
  with pytest.raises(ValueError, match='MiB free but the checkpoints need'):
    experiment.train(smoke_config(), str(tmp_path / 'run'))
  assert not list((tmp_path / 'run' / 'checkpoints').glob('[0-9]*'))


def _largest_data_file(step_folder):
  return max((p for p in step_folder.rglob('*') if p.is_file() and '/d/' in str(p)),
             key=lambda p: p.stat().st_size)


@pytest.mark.parametrize('damage, message', [
    # a flipped byte in compressed array data fails to decode or decodes to other values,
    # by where it lands (the file's layout follows the order the writes finished in)
    ('flip', 'cannot be restored|is corrupt'), ('fingerprint', 'is corrupt'),
    ('truncate', 'cannot be restored'), ('delete', 'cannot be restored'),
    ('metadata', r'is incomplete \(state/_METADATA missing\).*previous checkpoint \(step 110\)')])
def test_a_corrupt_checkpoint_is_a_clear_error(reference, tmp_path, damage, message):
  shutil.copytree(reference[0] / 'checkpoints', tmp_path / 'checkpoints')
  target = _largest_data_file(tmp_path / 'checkpoints' / '120')
  data = bytearray(target.read_bytes())
  if damage == 'flip':
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
  elif damage == 'fingerprint':  # the arrays read back, but are not the ones saved
    recorded = tmp_path / 'checkpoints' / '120' / 'fingerprint' / 'metadata'
    recorded.write_text(json.dumps({'sha256': '0' * 64}))
  elif damage == 'truncate':
    target.write_bytes(bytes(data[:len(data) // 2]))
  elif damage == 'metadata':  # the arrays are intact; orbax's metadata file is gone
    (tmp_path / 'checkpoints' / '120' / 'state' / '_METADATA').unlink()
  else:
    target.unlink()
  _, _, template, _ = experiment.state_template(smoke_config(total_steps=120))
  with pytest.raises(checkpoints.CheckpointError, match=message):
    checkpoints.restore(checkpoints.checkpoint_manager(tmp_path), template)


def test_a_checkpoint_written_before_fingerprints_still_restores(reference, tmp_path):
  state = reference[1]
  manager = checkpoints.ocp.CheckpointManager(tmp_path / 'checkpoints')
  manager.save(120, args=checkpoints.ocp.args.StandardSave(state))  # the old layout
  manager.wait_until_finished()
  assert (tmp_path / 'checkpoints' / '120' / 'default').is_dir()
  restored = checkpoints.restore(checkpoints.checkpoint_manager(tmp_path), state)
  assert_bit_identical(restored, state)


def test_a_foreign_checkpoint_is_a_clear_error(reference, tmp_path):
  shutil.copytree(reference[0], tmp_path / 'w')
  unet = grid.get_config('unet,medium,16,scale=smoke')
  unet.total_steps = 120
  with pytest.raises(errors.ConfigError, match="arch: resnet -> unet"):
    experiment.evaluate(unet, str(tmp_path / 'w'))
  with pytest.raises(checkpoints.CheckpointError, match='another architecture'):
    experiment.evaluate(unet, str(tmp_path / 'w'), allow_config_change=True)


# The derain command.

@pytest.mark.parametrize('height, width, tile, overlap', [
    (10, 7, 32, 8), (64, 64, 32, 8), (100, 37, 32, 0), (129, 300, 64, 16)])
def test_tiles_cover_the_image_and_blend_exactly(height, width, tile, overlap):
  image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
  calls = []
  out = tiles.predict_tiled(lambda t: calls.append(len(t)) or t ** 2, image, tile, overlap,
                            batch_size=3)
  np.testing.assert_allclose(out, image ** 2, rtol=1e-5, atol=1e-6)
  assert len(calls) * 3 >= tiles.count_tiles(height, width, tile, overlap)
  for length in (max(height, tile), max(width, tile)):
    starts = tiles.tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


_LARGE_IMAGE_CHILD = """
import pathlib, numpy as np
from flax import nnx
from jaxderain import models
from jaxderain.eval.evaluate import make_predict
from jaxderain.eval.tiles import predict_tiled

def peak_gb():  # VmHWM: ru_maxrss would carry the parent's peak over fork and exec
  status = pathlib.Path('/proc/self/status').read_text().splitlines()
  return int(next(l for l in status if l.startswith('VmHWM:')).split()[1]) * 1024 / 1e9

graphdef, params, rest = nnx.split(models.create('resnet', dict(features=16, num_blocks=2), 0),
                                   nnx.Param, ...)
predict = make_predict(graphdef, lambda out: out)
predict(params, rest, np.zeros((4, 256, 256, 3), np.float32)).block_until_ready()
before = peak_gb()
image = np.random.default_rng(0).random((3000, 4000, 3), np.float32)
out = predict_tiled(lambda tiles: predict(params, rest, tiles), image)
print(out.shape, np.isfinite(out).all(), peak_gb() - before)
"""


@pytest.mark.skipif(not pathlib.Path('/proc/self/status').exists(), reason='needs Linux')
def test_a_4000x3000_image_evaluates_in_tiles_in_bounded_memory():
  """The image (144 MB as float32) and its output are the only full-size arrays: one
  untiled pass of even this small model would hold several 0.8 GB activations."""
  result = subprocess.run([sys.executable, '-c', _LARGE_IMAGE_CHILD], cwd=ROOT, text=True,
                          capture_output=True, timeout=600, check=True,
                          env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  shape, finite, growth_gb = result.stdout.strip().splitlines()[-1].rsplit(' ', 2)
  assert shape == '(3000, 4000, 3)' and finite == 'True'
  assert float(growth_gb) < 0.8, f'peak memory grew by {growth_gb} GB'


def _photo_corpus(folder):
  folder.mkdir()
  rng = np.random.default_rng(0)
  rgb = skimage.data.coffee()[100:190, 200:340]  # a photo that ships with scikit-image
  Image.fromarray(rgb).save(folder / 'plain.png')
  exif = Image.Exif()
  exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
  Image.fromarray(rgb).save(folder / 'rotated.jpg', exif=exif)
  Image.fromarray(rgb[..., 0]).save(folder / 'grey.png')
  rgba = np.concatenate([rgb, (rng.random((90, 140, 1)) * 255).astype(np.uint8)], -1)
  Image.fromarray(rgba).save(folder / 'alpha.png')
  Image.fromarray((rng.random((50, 70)) * 65535).astype(np.uint16)).save(folder / 'deep.png')
  Image.fromarray((rng.random((300, 420, 3)) * 255).astype(np.uint8)).save(folder / 'large.png')
  Image.fromarray(rgb[:9, :7]).save(folder / 'tiny.png')
  (folder / 'empty.png').write_bytes(b'')
  (folder / 'notes.jpg').write_text('not an image')
  good = (folder / 'plain.png').read_bytes()
  (folder / 'cut.png').write_bytes(good[:len(good) // 3])
  return rgb, rgba


def derain(*args):
  return run_commands('jaxderain.derain', args)[0]


def test_derain_a_folder_of_mixed_photos(reference, tmp_path):
  rgb, rgba = _photo_corpus(tmp_path / 'in')
  result = derain(f'--workdir={reference[0]}', f'--input={tmp_path / "in"}',
                  f'--output={tmp_path / "out"}', '--tile=64', '--overlap=16')
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads(result.stdout.strip().splitlines()[-1])
  assert summary['written'] == 7 and summary['step'] == 120
  assert sorted(summary['skipped']) == ['cut.png', 'empty.png', 'notes.jpg']
  out = lambda name: Image.open(tmp_path / 'out' / name)
  assert out('plain.png').mode == 'RGB' and out('plain.png').size == (140, 90)
  assert out('rotated.png').size == (90, 140)  # upright, as viewers show it
  assert out('grey.png').mode == 'L'
  assert out('alpha.png').mode == 'RGBA'
  np.testing.assert_array_equal(np.asarray(out('alpha.png'))[..., 3], rgba[..., 3])
  assert out('deep.png').mode.startswith('I') and read_photo(tmp_path / 'out' / 'deep.png').bits == 16
  assert out('large.png').size == (420, 300) and out('tiny.png').size == (7, 9)
  # Tiles blend into what the model gives on the whole image at once.
  predict, _ = experiment.restore_predictor(reference[0])
  whole = np.asarray(predict(rgb[None].astype(np.float32) / 255.0))[0] * 255.0
  derained = np.asarray(out('plain.png'), np.float32)
  assert np.abs(derained - whole).mean() < 1.0 and 0 < np.abs(derained - rgb).mean()


def test_derain_strict_and_bad_workdir_are_one_line_errors(reference, tmp_path):
  _photo_corpus(tmp_path / 'in')
  strict, missing = run_commands(
      'jaxderain.derain',
      [f'--workdir={reference[0]}', f'--input={tmp_path / "in"}', f'--output={tmp_path / "out"}',
       '--strict'],
      [f'--workdir={tmp_path / "nowhere"}', f'--input={tmp_path / "in"}',
       f'--output={tmp_path / "out2"}'])  # out/ holds what --strict wrote first
  assert strict.returncode != 0 and 'cut.png is not a readable image' in strict.stderr
  assert 'Traceback' not in strict.stderr
  assert missing.returncode != 0 and 'config.json does not exist' in missing.stderr
  assert 'Traceback' not in missing.stderr
