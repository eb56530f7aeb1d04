"""Checkpoints of a TrainState under WORKDIR/checkpoints, with orbax.

Each checkpoint holds the state (orbax's standard format: arrays and JSON metadata, never
pickles), a SHA-256 fingerprint of its arrays and the training config it was made with,
written together. Orbax writes a step
into a temporary folder and renames it when complete, so a save killed mid-write is never
listed; a restore recomputes the fingerprint, so flipped or truncated bytes give an error
instead of a silently different model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import pathlib
import weakref

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxderain.errors import capped, first_line, CheckpointError, SaveError


# A workdir's checkpoints: WORKDIR/checkpoints/<step>/.
FOLDER = 'checkpoints'


class _Manager(ocp.CheckpointManager):
  """orbax's manager, leaving jax's preemption sync to the train loop.

  The sync protocol stops every process at the step after the furthest step any has
  reported through reached_preemption_sync_point. The loop reports each step once, in
  order; orbax would also report a checkpoint's step, from its saving thread once the
  loop has moved on, so a SIGTERM then could stop the processes at different steps."""

  def reached_preemption(self, step: int) -> bool:
    return False


def checkpoint_manager(workdir, keep: int | None = None) -> ocp.CheckpointManager:
  """The orbax manager of WORKDIR/checkpoints (atomic saves; the last `keep` kept)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return _Manager(pathlib.Path(workdir).absolute() / FOLDER, options=options)


def fingerprint(state) -> str:
  """SHA-256 over every array of `state` (tree order, dtype, shape and bytes)."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(jax.device_get(state)):
    leaf = np.ascontiguousarray(leaf)
    digest.update(f'{leaf.dtype}{leaf.shape}'.encode())
    digest.update(leaf.tobytes())
  return digest.hexdigest()


def save(manager: ocp.CheckpointManager, step: int, state, config: dict | None = None) -> None:
  """Save `state` as checkpoint `step` (asynchronously: see `wait`), with `config`, the
  training config it was made with (a JSON-able dict), when given.

  Raises CheckpointError (naming the last good checkpoint) if the write fails."""
  wait(manager)  # a failed earlier save is reported with its own step, not this one
  items = dict(state=ocp.args.StandardSave(state),
               fingerprint=ocp.args.JsonSave({'sha256': fingerprint(state)}))
  if config is not None:
    items['config'] = ocp.args.JsonSave(config)
  args = ocp.args.Composite(**items)
  try:
    manager.save(step, args=args, force=True)
  except Exception as error:  # orbax and tensorstore raise many types  # pylint: disable=broad-except
    raise _save_error(manager, step, error) from None
  _IN_FLIGHT[manager] = step


# The step of each manager's save still being written in the background.
_IN_FLIGHT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def wait(manager: ocp.CheckpointManager) -> None:
  """Wait for the save in flight, if any; a failed one raises CheckpointError naming
  its step."""
  step = _IN_FLIGHT.pop(manager, None)
  try:
    manager.wait_until_finished()
  except Exception as error:  # pylint: disable=broad-except
    raise _save_error(manager, step, error) from None


@contextlib.contextmanager
def finish_saves_on_error(manager: ocp.CheckpointManager):
  """On any exception in the block, let saves already started complete (so the last
  good checkpoint is on disk when the process exits), then re-raise it."""
  try:
    yield
  except BaseException:
    _finish_quietly(manager)
    raise


def _finish_quietly(manager) -> None:
  try:
    manager.wait_until_finished()
  except Exception:  # the failure being reported already; pylint: disable=broad-except
    pass


def _save_error(manager, step, error) -> SaveError:
  _finish_quietly(manager)
  good = [s for s in manager.all_steps(read=True) if s != step]
  last = f'step {max(good)}' if good else 'none'
  return SaveError(
      f'saving the checkpoint of step {step} in {manager.directory} failed '
      f'({_cause(error)}). The last good checkpoint is {last}; free disk space or fix the '
      'folder, then rerun the same command to resume.')


def _cause(error: BaseException) -> str:
  """The root cause of a failed save in a few words: orbax and tensorstore wrap it."""
  chain = [error]
  while chain[-1].__context__ is not None and len(chain) < 20:
    chain.append(chain[-1].__context__)
  if any('No space left on device' in str(e) for e in chain):
    return 'No space left on device: the disk is full'
  cause = next((e for e in chain if isinstance(e, OSError)), error)
  return f'{type(cause).__name__}: {first_line(cause)}'


# Files every checkpoint written by `save` has (orbax's state metadata and index, and
# the fingerprint); without one, the checkpoint is incomplete rather than foreign.
REQUIRED_FILES = ('state/_METADATA', 'state/manifest.ocdbt', 'fingerprint/metadata')


def restore(manager: ocp.CheckpointManager, template, step: int | None = None):
  """The checkpointed TrainState at `step` (default: latest), laid out like `template`;
  None if the manager holds no checkpoint. Raises CheckpointError for a checkpoint that
  is corrupt or was written for another model or config."""
  step = manager.latest_step() if step is None else step
  if step is None:
    return None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  folder = pathlib.Path(manager.directory) / str(step)
  missing = [name for name in REQUIRED_FILES if not (folder / name).exists()]
  if missing and not (folder / 'default').is_dir():
    earlier = [s for s in manager.all_steps() if s < step]
    previous = f'step {max(earlier)}' if earlier else 'none'
    raise CheckpointError(
        f'the checkpoint {folder} is incomplete ({", ".join(missing)} missing): delete that '
        f'folder to fall back to the previous checkpoint ({previous}), or retrain.')
  legacy = (folder / 'default').is_dir()
  mismatched = _dtype_mismatches(folder / ('default' if legacy else 'state'), abstract)
  if mismatched:
    raise CheckpointError(
        f'the checkpoint {folder} holds arrays of other dtypes than this model: '
        f'{capped(mismatched, "arrays")}. It was written with other dtypes (e.g. under '
        'jax_enable_x64): convert or train it again without jax_enable_x64, or restore it '
        'with the x64 setting it was written with.')
  try:
    if legacy:  # written before fingerprints: nothing to check
      logging.warning('Checkpoint %s has no fingerprint; restoring it unchecked.', folder)
      return ocp.StandardCheckpointer().restore(folder / 'default', abstract)
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), fingerprint=ocp.args.JsonRestore()))
  except Exception as error:  # pylint: disable=broad-except
    raise CheckpointError(
        f'the checkpoint {folder} cannot be restored for this config '
        f'({type(error).__name__}: {first_line(error)}). It is damaged (truncated or '
        'corrupted), or it was written by another architecture or model size: evaluate it '
        'with the config it was trained with (WORKDIR/config.json), or move the folder away '
        'to train afresh.') from None
  if fingerprint(restored.state) != restored.fingerprint['sha256']:
    raise CheckpointError(
        f'the checkpoint {folder} is corrupt: its arrays do not match the fingerprint '
        'saved with them. Delete that folder to fall back to the previous checkpoint, or '
        'retrain.')
  return restored.state


def restore_last(workdir, template, last: int) -> list[tuple[int, object]]:
  """[(step, TrainState)] of WORKDIR's last `last` checkpoints (at least one), oldest
  first, laid out like `template`; empty when WORKDIR holds none."""
  manager = checkpoint_manager(workdir)
  steps = sorted(manager.all_steps())[-max(1, last):]
  return [(step, restore(manager, template, step)) for step in steps]


def restore_newest(workdir, template, attempts: int = 3):
  """restore() of WORKDIR's latest checkpoint, for a reader beside a run that may still
  be training: when the checkpoint being read is deleted under it (the run keeps only its
  newest ones), the steps are listed again and the new latest is read."""
  for _ in range(attempts):
    manager = checkpoint_manager(workdir)
    step = manager.latest_step()
    try:
      return restore(manager, template, step)
    except (CheckpointError, OSError):
      if step is None or (pathlib.Path(manager.directory) / str(step)).is_dir():
        raise  # still there: a damaged checkpoint, not a deleted one
      logging.info('Checkpoint %d was deleted while it was read; reading the latest again.',
                   step)
  raise CheckpointError(f'the checkpoints in {workdir} were replaced {attempts} times while '
                        'they were read: rerun when the training writing them has stopped '
                        'or saves less often.')


def _leaf_name(path) -> str:
  """'params/conv/kernel' for a tree path (nnx.Variable's 'value' left out)."""
  parts = [str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path]
  return '/'.join(parts[:-1] if parts[-1:] == ['value'] else parts)


def _dtype_mismatches(folder: pathlib.Path, abstract) -> list[str]:
  """'params/conv/kernel (float64, expected float32)' for each array saved in the orbax
  `folder` with another dtype than `abstract`'s; [] when its metadata cannot be read
  (the restore reports that)."""
  try:
    saved = ocp.StandardCheckpointHandler().metadata(folder).tree
  except Exception:  # pylint: disable=broad-except
    return []
  dtypes = {_leaf_name(path): getattr(leaf, 'dtype', None)
            for path, leaf in jax.tree_util.tree_flatten_with_path(saved)[0]}
  mismatched = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
    name = _leaf_name(path)
    if dtypes.get(name) is None:  # not saved under this name: the restore reports it
      continue
    try:
      saved_dtype, expected = np.dtype(dtypes[name]), np.dtype(leaf.dtype)
    except TypeError:  # not a numpy dtype (e.g. a typed PRNG key)
      continue
    if saved_dtype != expected:
      mismatched.append(f'{name} ({saved_dtype}, expected {expected})')
  return mismatched


def latest_step(folder) -> int | None:
  """The latest complete checkpoint step in FOLDER (WORKDIR/checkpoints); None if none.

  Reads the folder alone: unlike a CheckpointManager, which waits for every process, a
  process may call it on its own (a manager must be made by all processes together)."""
  folder = pathlib.Path(folder)
  return max(ocp.path.step.checkpoint_steps(folder), default=None) if folder.is_dir() else None


def _saved_json(folder, step: int | None, item: str):
  """The JSON item `item` of checkpoint `step` in FOLDER, read as a plain file (orbax's
  JsonSave keeps it as `metadata` in the item's folder); None if it cannot be read."""
  if step is None:
    return None
  try:
    return json.loads((pathlib.Path(folder) / str(step) / item / 'metadata').read_text())
  except (OSError, ValueError):
    return None


def recorded_config(folder) -> dict | None:
  """The training config saved with the latest checkpoint in FOLDER; None when there is
  no checkpoint, it was saved without one or it cannot be read. Reads the folder alone,
  like `latest_step`."""
  config = _saved_json(folder, latest_step(folder), 'config')
  return config if isinstance(config, dict) else None


def saved_fingerprint(folder, step: int) -> str | None:
  """The fingerprint saved with checkpoint `step` in FOLDER (see `fingerprint`)."""
  saved = _saved_json(folder, step, 'fingerprint')
  return saved.get('sha256') if isinstance(saved, dict) else None
