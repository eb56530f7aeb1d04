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

from jaxderain import data, models
from jaxderain import workdir as workdir_lib
from jaxderain.configs import checks, grid
from jaxderain.errors import ConfigError, NotFoundError
from jaxderain.eval.evaluate import (EVAL_BYTES_PER_SET, evaluate_checkpoints, finite_outputs,
                                     make_predict)
from jaxderain.train import checkpoints, loop, multi_model
from jaxderain.distributed import device_mesh
from jaxderain.train.step import make_train_step, new_state


def _checked_model(config, training: bool = False):
  """(checks.Resolved, graphdef, step-0 TrainState) for `config`, checked first (for
  training too when `training`)."""
  resolved = checks.resolve(config, training=training)
  graphdef, state = new_state(resolved.architecture.build, config.model, config.seed,
                              resolved.optimizer)
  return resolved, graphdef, state


def state_template(config):
  """(architecture, graphdef, step-0 TrainState, optimizer) for `config`."""
  resolved, graphdef, state = _checked_model(config)
  return resolved.architecture, graphdef, state, resolved.optimizer


def _training_parts(config):
  """(checks.Resolved, graphdef, step-0 TrainState, uint8 (N, P, P, 3) background set B)
  for `config`, checked for training first."""
  resolved, graphdef, state = _checked_model(config, training=True)
  logging.info('Model: %s, %s parameters.', config.arch, f'{models.num_params(state.params):,}')
  own, backgrounds = data.training_set(resolved.backgrounds)
  logging.info('Background set: %d patches of %dx%d from %d %s images.', len(backgrounds),
               config.patch_size, config.patch_size, len(own.train), own.name)
  return resolved, graphdef, state, backgrounds


def build_training(config):
  """(step-0 TrainState, jitted train step, uint8 (N, P, P, 3) background set B) for
  `config`, checked for training first."""
  resolved, graphdef, state, backgrounds = _training_parts(config)
  step = make_train_step(graphdef, resolved.loss, resolved.optimizer, resolved.rain_range,
                         config.batch_size, config.flips, device_mesh(),
                         resolved.compute_dtype)
  return state, step, backgrounds


def train(config, workdir: str, allow_config_change: bool = False):
  """Train the grid point into WORKDIR (resuming if it holds checkpoints). A workdir
  trained with other training fields is refused unless `allow_config_change`.

  In a multi-process run every process calls this with the same config and WORKDIR, a
  folder all of them see; process 0 writes WORKDIR/config.json and the logs, and all
  processes save each checkpoint together (written once)."""
  state, step, backgrounds = build_training(config)
  with workdir_lib.training(workdir, config, state, allow_config_change):
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
  for config in configs:
    checks.resolve(config, training=True)  # every config before any work
  built = [_training_parts(config) for config in configs]
  first, (how, graphdef, _, _) = configs[0], built[0]
  multi_step = multi_model.make_multi_train_step(
      graphdef, how.loss, how.optimizer, how.rain_range, first.batch_size, first.flips,
      device_mesh(), how.compute_dtype)
  with contextlib.ExitStack() as held:
    for config, workdir, (_, _, state, _) in zip(configs, workdirs, built):
      held.enter_context(workdir_lib.training(workdir, config, state))
    logging.info('Training %d grid points together: %s.', len(configs), ', '.join(
        map(str, workdirs)))
    final, histories = loop.fit_together(
        [state for _, _, state, _ in built], multi_step, [b for *_, b in built],
        workdirs=[str(w) for w in workdirs], total_steps=first.total_steps,
        log_every=first.log_every, checkpoint_every=first.checkpoint_every,
        keep_checkpoints=first.keep_checkpoints, mesh=device_mesh(),
        configs=[json.loads(c.to_json()) for c in configs])
  return list(zip(final, histories))


def evaluate(config, workdir: str, allow_config_change: bool = False) -> dict[str, dict]:
  """Evaluate the latest checkpoint of WORKDIR on every test set, with means over the
  last eval.average_last checkpoints; writes WORKDIR/eval/<set>.json and .png (in a
  multi-process run, every process evaluates and process 0 writes)."""
  resolved, graphdef, template = _checked_model(config)
  with workdir_lib.evaluation(workdir, config, allow_config_change) as eval_dir:
    sets = data.point_test_sets(resolved.backgrounds, resolved.tests, resolved.rain_shifts,
                                resolved.rain_range)
    writes = jax.process_index() == 0
    if writes:
      workdir_lib.ensure_writable(eval_dir, len(sets) * EVAL_BYTES_PER_SET,
                                  'the evaluation files')
    states = checkpoints.restore_last(workdir, template, config.eval.average_last)
    predict = make_predict(graphdef, resolved.architecture.image)
    return evaluate_checkpoints(
        predict, states, sets, threshold=config.eval.rain_threshold,
        outdir=eval_dir if writes else None, strip_images=config.eval.strip_images)


def restore_predictor(workdir):
  """(predict, step) of WORKDIR's latest checkpoint, the model built from the config the
  run recorded: predict maps (B, H, W, 3) rainy images in [0, 1] to derained ones."""
  workdir = pathlib.Path(workdir)
  recorded = workdir_lib.recorded_config(workdir)
  if recorded is None:
    raise NotFoundError(f'{workdir / workdir_lib.CONFIG_NAME} does not exist: pass the --workdir '
                            'of a trained run (launch.py) or of a converted model '
                            '(jaxderain.convert).')
  architecture, graphdef, template, _ = state_template(ml_collections.ConfigDict(recorded))
  state = checkpoints.restore_newest(workdir, template)
  if state is None:
    raise NotFoundError(f'No checkpoint in {workdir / checkpoints.FOLDER}: train it first.')
  predict = make_predict(graphdef, architecture.image)
  return (lambda tiles: finite_outputs(predict(state.params, state.model_state, tiles)),
          int(state.step))
