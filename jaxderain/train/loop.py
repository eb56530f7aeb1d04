"""The train loop: resume from the latest checkpoint, step, log with clu, checkpoint with
orbax under WORKDIR/checkpoints."""

from __future__ import annotations

import logging
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp
from clu import metric_writers, periodic_actions
from jax.sharding import NamedSharding, PartitionSpec

from jaxderain.train.step import TrainState


def checkpoint_manager(workdir, save_every: int | None = None,
                       keep: int | None = None) -> ocp.CheckpointManager:
  """The orbax manager of WORKDIR/checkpoints (atomic saves; the last `keep` kept)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=save_every,
                                         create=True)
  return ocp.CheckpointManager(pathlib.Path(workdir).absolute() / 'checkpoints',
                               options=options)


def restore(manager: ocp.CheckpointManager, template: TrainState, step: int | None = None):
  """The checkpointed TrainState at `step` (default: latest), laid out like `template`;
  None if the manager holds no checkpoint."""
  step = manager.latest_step() if step is None else step
  if step is None:
    return None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def replicate(tree, mesh: jax.sharding.Mesh):
  """Place every array of `tree` on all devices of `mesh`."""
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def fit(state: TrainState, train_step, backgrounds: np.ndarray, *, workdir: str,
        total_steps: int, log_every: int, checkpoint_every: int, keep_checkpoints: int,
        mesh: jax.sharding.Mesh) -> tuple[TrainState, list[dict]]:
  """Train until `total_steps`, resuming from WORKDIR/checkpoints if it holds a checkpoint.

  state: the step-0 state (also the layout for restoring). backgrounds: uint8
  (N, P, P, 3), put on every device once. Returns the final state and the logged
  train metrics of this call, [{'step': s, 'loss': mean since the last log, ...}].
  """
  manager = checkpoint_manager(workdir, checkpoint_every, keep_checkpoints)
  restored = restore(manager, state)
  if restored is not None:
    logging.info('Resuming from checkpoint at step %d.', int(restored.step))
    state = restored
  state = replicate(state, mesh)
  backgrounds = replicate(backgrounds, mesh)

  is_lead = jax.process_index() == 0
  writer = metric_writers.create_default_writer(workdir, just_logging=not is_lead)
  progress = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                             every_steps=log_every)
  step = int(state.step)
  pending, history = [], []
  while step < total_steps:
    state, metrics = train_step(state, backgrounds)
    step += 1
    pending.append(metrics)
    progress(step)
    if step % log_every == 0 or step == total_steps:
      summary = jax.tree.map(lambda *m: float(np.mean(m)), *jax.device_get(pending))
      writer.write_scalars(step, {f'train/{k}': v for k, v in summary.items()})
      history.append({'step': step, **summary})
      pending = []
    manager.save(step, args=ocp.args.StandardSave(state), force=step == total_steps)
  if manager.latest_step() != step:
    manager.save(step, args=ocp.args.StandardSave(state), force=True)
  manager.wait_until_finished()
  writer.flush()
  return state, history
