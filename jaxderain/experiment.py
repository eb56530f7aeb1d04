"""One grid point, from its config to a trained and evaluated model.

This is where a ConfigDict is read; everything below it takes plain values and arrays.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pathlib

import jax
import ml_collections
import numpy as np
from flax import nnx

from jaxderain import data, models
from jaxderain.configs import checks, grid
from jaxderain.data.testsets import RAIN100L, short_category
from jaxderain.errors import ConfigError, NotFoundError
from jaxderain.eval.evaluate import evaluate as evaluate_sets
from jaxderain.eval.evaluate import finite_outputs, make_predict, summary_table
from jaxderain.train import checkpoints, loop, multi_model
from jaxderain.train.step import device_mesh, init_state, make_optimizer, make_train_step
from jaxderain.workdir import (check_workdir_config, check_workdir_path, ensure_writable, hold,
                               latest_step, prepare_for_training, recorded_config)


def state_template(config):
  """(architecture, graphdef, step-0 TrainState, optimizer) for `config`."""
  architecture = models.get(config.arch)
  root = jax.random.PRNGKey(config.seed)
  init_key, train_key = jax.random.split(root)
  model = architecture.build(**config.model, rngs=nnx.Rngs(params=init_key))
  tx = make_optimizer(config.learning_rate, config.b1, config.b2, config.total_steps,
                      config.final_learning_rate)
  graphdef, state = init_state(model, tx, train_key)
  return architecture, graphdef, state, tx


def category(config) -> data.Category:
  """The background category of `config`, small images upscaled if it says so."""
  found = data.load_category(config.category, config.data_dir or None, config.test_fraction,
                             strict=config.strict_images)
  if config.upscale_small_images:
    found.train = data.upscale_small(found.train, config.patch_size)
    found.test = data.upscale_small(found.test, config.eval.image_size)
  return found


def training_backgrounds(config) -> np.ndarray:
  """The uint8 (N, P, P, 3) background set that `config` trains on."""
  backgrounds_of = category(config)
  backgrounds = data.background_set(backgrounds_of.train, config.num_patches,
                                    config.patch_size, config.seed)
  logging.info('Background set: %d patches of %dx%d from %d %s images.', len(backgrounds),
               config.patch_size, config.patch_size, len(backgrounds_of.train),
               backgrounds_of.name)
  return backgrounds


def build_training(config):
  """(step-0 TrainState, jitted train step, uint8 background set) for `config` (checked
  by the caller)."""
  backgrounds = training_backgrounds(config)
  architecture, graphdef, state, tx = state_template(config)
  logging.info('Model: %s, %s parameters.', config.arch, f'{models.num_params(state.params):,}')
  step = make_train_step(graphdef, architecture.loss(config.loss), tx, checks.rain_range(config),
                         config.batch_size, config.flips, device_mesh(),
                         checks.COMPUTE_DTYPES[config.compute_dtype])
  return state, step, backgrounds


def train(config, workdir: str, allow_config_change: bool = False):
  """Train the grid point into WORKDIR (resuming if it holds checkpoints). A workdir
  trained with other training fields is refused unless `allow_config_change`.

  In a multi-process run every process calls this with the same config and WORKDIR, a
  folder all of them see; process 0 writes WORKDIR/config.json and the logs, and all
  processes save each checkpoint together (written once)."""
  check_workdir_path(workdir)
  checks.check(config)
  checks.check_batch_splits(config)
  with hold(workdir, 'training'):
    state, step, backgrounds = build_training(config)
    prepare_for_training(config, workdir, state, allow_config_change)
    return loop.fit(state, step, backgrounds, workdir=str(workdir),
                    total_steps=config.total_steps, log_every=config.log_every,
                    checkpoint_every=config.checkpoint_every,
                    keep_checkpoints=config.keep_checkpoints, mesh=device_mesh(),
                    config=json.loads(config.to_json()))


def check_together(configs, workdirs) -> None:
  """Refuse configs that cannot share one vmapped program, naming the first differing
  shared field (configs/grid.py), and workdirs given twice."""
  if len(configs) != len(workdirs) or not configs:
    raise ConfigError(f'train_together needs one workdir per config, got {len(configs)} '
                      f'configs and {len(workdirs)} workdirs.')
  folders = [pathlib.Path(w).absolute() for w in workdirs]
  if len(set(folders)) < len(folders):
    raise ConfigError(f'train_together got a workdir twice '
                      f'({", ".join(map(str, workdirs))}): give each grid point its own.')
  shared = ', '.join(f.name for f in grid.FIELDS if f.shared)
  for workdir, config in zip(workdirs[1:], configs[1:]):
    if differs := grid.SCHEMA.first_unshared(configs[0], config):
      field, first, other = differs
      raise ConfigError(
          f'{workdirs[0]} and {workdir} cannot train together: config.{field} differs '
          f'({first} vs {other}). Points trained together share {shared}; train the '
          'others separately (launch.py).')


def train_together(configs, workdirs) -> list[tuple]:
  """Train K grid points in one vmapped program (jaxderain/train/multi_model.py), each
  into its own workdir in launch.py's layout (config.json, checkpoints/, event files),
  so `launch.py --mode=eval` and the study report read them unchanged. Resumes if all K
  hold checkpoints of one step. Off by default: it pays for small models on a GPU only
  (see jaxderain/train/multi_model.py).

  Returns [(final TrainState, logged train metrics)] per point, as `train` does."""
  check_together(configs, workdirs)
  for config, workdir in zip(configs, workdirs):
    check_workdir_path(workdir)
    checks.check(config)
    checks.check_batch_splits(config)
  with contextlib.ExitStack() as locks:
    for workdir in workdirs:
      locks.enter_context(hold(workdir, 'training (together)'))
    return _train_together(configs, workdirs)


def _train_together(configs, workdirs) -> list[tuple]:
  for config, workdir in zip(configs, workdirs):
    check_workdir_config(config, workdir)  # before any work
  backgrounds = [training_backgrounds(config) for config in configs]
  templates = [state_template(config) for config in configs]
  first, (architecture, graphdef, _, tx) = configs[0], templates[0]
  states = [template[2] for template in templates]
  for config, workdir, state in zip(configs, workdirs, states):
    prepare_for_training(config, workdir, state)
  multi_step = multi_model.make_multi_train_step(
      graphdef, architecture.loss(first.loss), tx, checks.rain_range(first), first.batch_size,
      first.flips, device_mesh(), checks.COMPUTE_DTYPES[first.compute_dtype])
  logging.info('Training %d grid points together: %s.', len(configs), ', '.join(
      map(str, workdirs)))
  final, histories = loop.fit_together(
      states, multi_step, backgrounds, workdirs=[str(w) for w in workdirs],
      total_steps=first.total_steps, log_every=first.log_every,
      checkpoint_every=first.checkpoint_every, keep_checkpoints=first.keep_checkpoints,
      mesh=device_mesh(), configs=[json.loads(c.to_json()) for c in configs])
  return list(zip(final, histories))


def rain100l_pairs(config) -> data.TestSet | None:
  """Rain100L from config.eval.rain100l (a folder), else from data_dir: a TFDS build
  (prepare --paired=rain100l) or the folder DATA_DIR/rain100L; None if none is there."""
  limit = config.eval.rain100l_limit
  if config.eval.rain100l:
    return data.paired_folder(RAIN100L, config.eval.rain100l, limit)
  if not config.data_dir:
    return None
  from jaxderain.data import tfds_builders  # pylint: disable=g-import-not-at-top
  prepared = tfds_builders.load_prepared_pairs('rain100l', config.data_dir)
  if prepared is not None:
    names, rainy, clean = (part[:limit] for part in prepared)
    return data.paired_set(RAIN100L, rainy, clean, names)
  folder = pathlib.Path(config.data_dir) / 'rain100L'
  return data.paired_folder(RAIN100L, folder, limit) if folder.is_dir() else None


def test_sets(config) -> list[data.TestSet]:
  """The test sets of a grid point (data/testsets.py's point_test_sets: every rain the
  training never saw, then its own training rain)."""
  own = category(config)
  extra = [data.load_category(c, config.data_dir or None, config.test_fraction)
           for c in config.eval.extra_categories
           if short_category(c) != short_category(own.name)]
  backgrounds = data.background_set(own.train, config.num_patches, config.patch_size,
                                    config.seed)
  return data.point_test_sets(
      own, extra, rain100l_pairs(config), checks.rain_shifts(config), backgrounds,
      checks.rain_range(config), count=config.eval.num_images, size=config.eval.image_size,
      seed=config.eval.seed)


def evaluate(config, workdir: str, allow_config_change: bool = False) -> dict[str, dict]:
  """Evaluate the latest checkpoint of WORKDIR on every test set, with means over the
  last eval.average_last checkpoints; writes WORKDIR/eval/<set>.json and .png (in a
  multi-process run, every process evaluates and process 0 writes)."""
  check_workdir_path(workdir)
  checks.check(config)
  if not (pathlib.Path(workdir) / 'checkpoints').is_dir():
    _no_checkpoint(workdir)
  with hold(workdir, 'evaluation'):  # before reading checkpoints in use
    return _evaluate(config, workdir, allow_config_change)


def _no_checkpoint(workdir):
  raise NotFoundError(
      f'No checkpoint in {pathlib.Path(workdir) / "checkpoints"}: train this grid point '
      f'first (launch.py --mode=train with the same --workdir).')


# Room an evaluation's files take at most, per test set: its JSON and its image strip.
EVAL_BYTES_PER_SET = 4 * 2**20


def _evaluate(config, workdir: str, allow_config_change: bool) -> dict[str, dict]:
  if latest_step(workdir) is None:
    _no_checkpoint(workdir)
  check_workdir_config(config, workdir, allow_config_change)
  sets = test_sets(config)
  ensure_writable(pathlib.Path(workdir) / 'eval', len(sets) * EVAL_BYTES_PER_SET,
                  'the evaluation files')
  architecture, graphdef, template, _ = state_template(config)
  manager = checkpoints.checkpoint_manager(workdir)
  predict = make_predict(graphdef, architecture.image)
  steps = sorted(manager.all_steps())[-max(1, config.eval.average_last):]
  earlier = []
  for step in steps:
    state = checkpoints.restore(manager, template, step)
    results = evaluate_sets(predict, state.params, state.model_state, sets, step=step,
                            threshold=config.eval.rain_threshold, earlier=earlier,
                            outdir=(pathlib.Path(workdir) / 'eval'
                                    if step == steps[-1] and jax.process_index() == 0
                                    else None),
                            strip_images=config.eval.strip_images)
    earlier.append(results)
  for line in summary_table(results):
    logging.info('%s', line)
  return results


def restore_predictor(workdir):
  """(predict, step) of WORKDIR's latest checkpoint, the model built from the config the
  run recorded: predict maps (B, H, W, 3) rainy images in [0, 1] to derained ones."""
  workdir = pathlib.Path(workdir)
  recorded = recorded_config(workdir)
  if recorded is None:
    raise NotFoundError(f'{workdir / "config.json"} does not exist: pass the --workdir '
                            'of a trained run (launch.py) or of a converted model '
                            '(jaxderain.convert).')
  config = ml_collections.ConfigDict(recorded)
  checks.check_model_options(config)
  architecture, graphdef, template, _ = state_template(config)
  state = checkpoints.restore_newest(workdir, template)
  if state is None:
    raise NotFoundError(f'No checkpoint in {workdir / "checkpoints"}: train it first.')
  predict = make_predict(graphdef, architecture.image)
  return (lambda tiles: finite_outputs(predict(state.params, state.model_state, tiles)),
          int(state.step))
