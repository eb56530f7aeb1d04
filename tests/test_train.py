"""Train, checkpoint, resume and evaluate a smoke grid point end to end."""

import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import point_test_sets
from jaxderain import cpu_flags, experiment
from jaxderain import errors
from jaxderain import workdir as workdir_module
from jaxderain.configs import checks, grid
from jaxderain.eval import evaluate, metrics
from jaxderain.rain import shifts
from jaxderain.train import checkpoints, loop

ROOT = pathlib.Path(__file__).resolve().parents[1]


def smoke_config(**overrides):
  config = grid.get_config('resnet,medium,16,scale=smoke')
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('run')
  config = smoke_config()
  state, history = experiment.train(config, str(workdir))
  return config, workdir, state, history


def test_loss_falls_and_checkpoints_are_kept(trained):
  config, workdir, state, history = trained
  assert int(state.step) == config.total_steps
  assert [h['step'] for h in history] == list(range(10, config.total_steps + 1, 10))
  assert history[-1]['loss'] < 0.8 * history[0]['loss']
  steps = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())
  assert steps == [20, 30, 40]  # every 10 steps, the last 3 kept
  assert json.loads((workdir / 'config.json').read_text())['num_patches'] == 16
  assert list(workdir.glob('events.out.tfevents.*'))


def test_resume_continues_from_the_latest_checkpoint(trained, tmp_path):
  config, workdir, state, _ = trained
  shutil.copytree(workdir / 'checkpoints', tmp_path / 'checkpoints')
  for step in ('30', '40'):
    shutil.rmtree(tmp_path / 'checkpoints' / step)
  resumed, history = experiment.train(config, str(tmp_path))
  assert [h['step'] for h in history] == [30, 40]  # resumed at 20, not from scratch
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_eval_restores_and_writes_json_and_strip(trained):
  config, workdir, _, _ = trained
  results = experiment.evaluate(config, str(workdir))
  written = json.loads((workdir / 'eval' / 'natural_unseen.json').read_text())
  assert written['step'] == config.total_steps == results['natural_unseen']['step']
  assert written['num_images'] == config.eval.num_images
  for key in ('E_R', 'E_B', 'psnr', 'ssim', 'removal_share'):
    assert math.isfinite(written[key]), key
  assert 0 < written['E_R'] <= 255 and 0 <= written['ssim'] <= 1
  assert (workdir / 'eval' / 'natural_unseen.png').stat().st_size > 0


def test_eval_averages_recent_checkpoints_and_checks_training_data(trained, tmp_path):
  config, workdir, _, _ = trained
  shutil.copytree(workdir / 'checkpoints', tmp_path / 'checkpoints')
  config = smoke_config()
  config.eval.average_last = 3
  config.eval.extra_categories = (str(make_folder_category(tmp_path / 'other')),)
  results = experiment.evaluate(config, str(tmp_path))
  assert set(results) == {'natural_unseen', 'other_unseen', 'natural_train'}
  recent = results['natural_unseen']['recent']
  assert recent['steps'] == [20, 30, 40]
  assert recent['E_R'] != results['natural_unseen']['E_R']  # a mean over three steps
  assert results['natural_train']['num_images'] == min(16, config.eval.num_images)
  assert results['natural_train']['rain_fraction'] > 0
  # Each averaged checkpoint scored on its own: `recent` is the mean of their scores.
  by_step = scores_one_by_one(config, tmp_path, recent['steps'])
  for name, result in results.items():
    assert result['recent']['steps'] == [20, 30, 40]
    for key in metrics.METRIC_KEYS:
      alone = [by_step[step][name][key] for step in (20, 30, 40)]
      assert result['recent'][key] == pytest.approx(np.mean(alone), rel=1e-9, abs=1e-12), (
          name, key)
      assert result[key] == pytest.approx(alone[-1], rel=1e-9, abs=1e-12)  # the latest
    assert len({by_step[step][name]['E_R'] for step in (20, 30, 40)}) == 3


def scores_one_by_one(config, workdir, steps) -> dict[int, dict[str, dict]]:
  """{step: {test set: evaluate.score}} of each checkpoint restored and run alone."""
  architecture, graphdef, template, _ = experiment.state_template(config)
  predict = evaluate.make_predict(graphdef, architecture.image)
  manager = checkpoints.checkpoint_manager(workdir)
  sets = point_test_sets(config)
  scores = {}
  for step in steps:
    state = checkpoints.restore(manager, template, step)
    assert int(state.step) == step
    scores[step] = {s.name: evaluate.score(
        evaluate.run_model(predict, state.params, state.model_state, s.rainy), s,
        config.eval.rain_threshold) for s in sets}
  return scores


def test_shifted_test_sets_share_backgrounds_and_differ_in_one_parameter():
  config = smoke_config()
  config.eval.rain_shifts = ('width',)
  config.eval.extra_categories = ('natural',)  # the run's own category: not tested twice
  sets = point_test_sets(config)
  names = [s.name for s in sets]
  assert names == ['natural_unseen', *[f'natural_width{w}' for w in shifts.WIDTHS],
                   'natural_train']
  thin, wide = sets[1], sets[-2]
  np.testing.assert_array_equal(thin.clean[0], wide.clean[0])
  # One rain key: the same streak seeds, blurred thin or wide.
  assert np.corrcoef(thin.rain_layer[0].ravel(), wide.rain_layer[0].ravel())[0, 1] > 0.3
  assert thin.rain_layer[0].mean() != wide.rain_layer[0].mean()
  config.eval.rain_shifts = ('tilt',)
  with pytest.raises(errors.ConfigError, match="config.eval.rain_shifts: Unknown rain "
                     r"shift axis \['tilt'\]"):
    checks.resolve(config)


def make_folder_category(folder):
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(4):
    Image.fromarray(rng.integers(0, 256, (90, 100, 3), dtype=np.uint8)).save(
        folder / f'{i}.png')
  return folder


def test_eval_on_real_rain100l(trained, data_dir):
  config, workdir, _, _ = trained
  config = smoke_config(data_dir=str(data_dir))
  config.eval.rain100l_limit = 3
  results = experiment.evaluate(config, str(workdir))
  assert results['rain100L']['num_images'] == 3
  assert math.isfinite(results['rain100L']['psnr'])


def run_steps(xla_flags, steps=5, *overrides):
  env = {**os.environ, 'XLA_FLAGS': xla_flags, 'JAX_PLATFORMS': 'cpu'}
  result = subprocess.run([sys.executable, str(ROOT / 'tests' / 'run_steps.py'), str(steps),
                           *overrides], env=env, capture_output=True, text=True, timeout=300,
                          check=True)
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_eight_devices_match_one():
  one = run_steps('--xla_force_host_platform_device_count=1')
  eight = run_steps('--xla_force_host_platform_device_count=8')
  assert (one['devices'], eight['devices']) == (1, 8)
  np.testing.assert_allclose(eight['losses'], one['losses'], rtol=1e-5)
  for a, b in zip(one['params'], eight['params']):
    np.testing.assert_allclose(b, a, atol=2e-5)


def test_fast_cpu_flag_gives_the_same_training():
  if not cpu_flags.flag_supported(cpu_flags.FAST_CPU_FLAG):
    pytest.skip('this jaxlib does not know the flag')
  default = run_steps('')
  fast = run_steps(cpu_flags.FAST_CPU_FLAG)
  np.testing.assert_allclose(fast['losses'], default['losses'], rtol=1e-4)
  for a, b in zip(default['params'], fast['params']):
    np.testing.assert_allclose(b, a, atol=2e-5)


def losses_and_state(config, steps=4):
  state, train_step, backgrounds = experiment.build_training(config)
  losses = []
  for _ in range(steps):
    state, metrics = train_step(state, backgrounds)
    losses.append(float(metrics['loss']))
  return losses, state


def test_bfloat16_compute_keeps_float32_weights_and_tracks_float32():
  config = smoke_config()
  reference, _ = losses_and_state(config)
  config.compute_dtype = 'bfloat16'
  losses, state = losses_and_state(config)
  assert {x.dtype for x in jax.tree.leaves(state.params)} == {np.dtype('float32')}
  assert {x.dtype for x in jax.tree.leaves(state.opt_state)
          if np.issubdtype(x.dtype, np.floating)} == {np.dtype('float32')}
  assert losses != reference  # computed in another precision
  np.testing.assert_allclose(losses, reference, rtol=2e-2)
  config.compute_dtype = 'float16'
  with pytest.raises(errors.ConfigError, match='compute_dtype'):
    checks.resolve(config)


def train_and_evaluate(tmp_path, arg, **overrides):
  config = grid.get_config(f'{arg},scale=smoke')
  config.total_steps, config.checkpoint_every = 10, 10
  for key, value in overrides.items():
    config[key] = value
  state, history = experiment.train(config, str(tmp_path))
  results = experiment.evaluate(config, str(tmp_path))
  assert int(state.step) == 10 and math.isfinite(history[-1]['loss'])
  return results


@pytest.mark.parametrize('rain_range', ['small', 'large'])  # medium: the tests above
def test_every_rain_range_trains_and_evaluates(tmp_path, rain_range):
  results = train_and_evaluate(tmp_path, f'resnet,{rain_range},16')
  assert math.isfinite(results['natural_unseen']['E_R'])


@pytest.mark.parametrize('category', ['urban100', 'manga109', 'celeba', 'natural'])
def test_every_real_category_trains_and_evaluates(tmp_path, data_dir, category):
  results = train_and_evaluate(tmp_path, f'resnet,medium,16,category={category}',
                               data_dir=str(data_dir))
  assert set(results) == {f'{category}_unseen', f'{category}_rain100L', 'rain100L',
                          f'{category}_train'}
  assert all(math.isfinite(r['E_B']) for r in results.values())


def test_rain_fields_can_be_overridden_and_are_checked():
  config = smoke_config()
  config.rain.angle = (-45, 45)
  assert checks.rain_range(config).angle == (-45, 45)
  config.rain.angle = (45, -45)
  with pytest.raises(errors.ConfigError, match='config.rain.*angle'):
    checks.resolve(config)


@pytest.mark.parametrize('arch', [a for a in grid.ARCHS if a != 'resnet'])
def test_every_arch_trains_and_evaluates(tmp_path, arch):
  results = train_and_evaluate(tmp_path, f'{arch},medium,16')
  result = results['natural_unseen']
  assert all(math.isfinite(result[k]) for k in ('E_R', 'E_B', 'psnr', 'ssim'))


def test_batch_statistics_are_trained_saved_and_restored(tmp_path):
  from jaxderain.train import checkpoints  # pylint: disable=g-import-not-at-top
  config = grid.get_config('rcdnet,medium,16,scale=smoke')
  config.total_steps, config.checkpoint_every = 4, 4
  state, _ = experiment.train(config, str(tmp_path))
  _, _, template, _ = experiment.state_template(config)
  restored = checkpoints.restore(checkpoints.checkpoint_manager(tmp_path), template)
  stats = lambda s: [np.asarray(x) for x in jax.tree.leaves(s.model_state)]
  assert stats(template)  # the model has BatchNorm statistics
  assert any(not np.allclose(a, b) for a, b in zip(stats(template), stats(state)))
  for a, b in zip(stats(state), stats(restored)):
    np.testing.assert_array_equal(a, b)


def test_a_run_recorded_before_compute_dtype_existed_is_unchanged(tmp_path):
  config = smoke_config()
  recorded = json.loads(config.to_json())
  del recorded['compute_dtype']
  (tmp_path / 'config.json').write_text(json.dumps(recorded))
  assert workdir_module.config_changes(config, tmp_path) == []
  config.compute_dtype = 'bfloat16'
  assert workdir_module.config_changes(config, tmp_path) == ['compute_dtype: float32 -> bfloat16']


def test_the_logged_metrics_are_the_means_between_log_steps():
  logged = [(1, {'loss': np.float32(1.0), 'grad_norm': np.float32(2.0)}),
            (2, {'loss': np.float32(3.0), 'grad_norm': np.float32(10.0)}),
            (3, {'loss': np.float32(5.0), 'grad_norm': np.float32(0.0)})]
  assert loop.mean_metrics(logged) == {'loss': 3.0, 'grad_norm': 4.0}


def adam_by_hand(gradients, learning_rates, b1, b2, eps=1e-8):
  """Adam's updates (Kingma and Ba 2015, bias-corrected), float64."""
  m = v = np.zeros_like(gradients[0], np.float64)
  updates = []
  for t, (g, lr) in enumerate(zip(gradients, learning_rates), start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    updates.append(-lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps))
  return updates


def optimizer_updates(tx, gradients):
  params = jnp.zeros_like(gradients[0])
  state, update = tx.init(params), jax.jit(tx.update)
  updates = []
  for g in gradients:
    u, state = update(jnp.asarray(g), state, params)
    updates.append(np.asarray(u, np.float64))
  return updates


@pytest.mark.parametrize('overrides', [{}, dict(b1=0.8, b2=0.95, final_learning_rate=3e-5)])
def test_the_optimizer_is_adam_with_the_configs_cosine_schedule(overrides):
  config = smoke_config(**overrides)  # {}: the grid's own b1, b2 and final rate
  _, _, _, tx = experiment.state_template(config)  # the optimizer training uses
  total, peak, final = config.total_steps, config.learning_rate, config.final_learning_rate
  # Cosine annealing from the peak rate at step 0 to the final rate at the last step.
  cosine = [final + (peak - final) * (1 + math.cos(math.pi * k / total)) / 2
            for k in range(total + 1)]
  assert (cosine[0], cosine[total // 2], cosine[total]) == pytest.approx(
      (peak, (peak + final) / 2, final))
  # A constant gradient makes Adam's bias-corrected step lr * g / (|g| + eps) at every
  # step: the updates read the learning rate of each step, the last ones included.
  g = np.array([1.0, -2.0, 0.5], np.float32)
  steps = optimizer_updates(tx, [g] * (total + 1))
  rates = [-u / (g / (np.abs(g) + 1e-8)) for u in steps]
  near = dict(rtol=1e-5, atol=1e-6 * peak)  # float32: 1 + cos cancels near the end
  for k in (0, 1, total // 2, total - 1, total):
    np.testing.assert_allclose(rates[k], cosine[k], **near, err_msg=f'step {k}')
  np.testing.assert_allclose(np.mean(rates, axis=1), cosine, **near)
  # Varying gradients: the moments' decay rates b1 and b2 show in every update.
  rng = np.random.default_rng(0)
  gradients = [rng.standard_normal(5).astype(np.float32) * 10 ** rng.uniform(-3, 0)
               for _ in range(12)]
  expected = adam_by_hand(gradients, cosine, config.b1, config.b2)
  np.testing.assert_allclose(np.stack(optimizer_updates(tx, gradients)), np.stack(expected),
                             rtol=2e-4, atol=1e-12)
  for b1, b2 in ((0.9, 0.999), (config.b1 - 0.05, config.b2), (config.b1, config.b2 - 0.05)):
    other = adam_by_hand(gradients, cosine, b1, b2)  # Adam with other moments differs
    assert not np.allclose(np.stack(other), np.stack(expected), rtol=2e-3, atol=0)
