"""The train loop: resume from the latest checkpoint, step, log (means between log steps
by clu.metrics; a console line and TensorBoard scalars, events.py), checkpoint with orbax under WORKDIR/checkpoints
(jaxderain/train/checkpoints.py), stop cleanly on SIGTERM and on a non-finite loss.
`fit` trains one model; `fit_together` K models by one vmapped step
(jaxderain/train/multi_model.py), each in its own workdir."""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
import time
from typing import Callable

import jax
import numpy as np
from clu import metrics as clu_metrics
from jax.experimental import multihost_utils

from jaxderain.errors import NonFiniteError, Preempted
from jaxderain.train import checkpoints, multi_model
from jaxderain.train.events import EventWriter
from jaxderain.distributed import replicate
from jaxderain.train.step import TrainState


@contextlib.contextmanager
def sigterm_flag():
  """Within the block, SIGTERM sets the returned Event instead of killing the process."""
  stop = threading.Event()
  if threading.current_thread() is not threading.main_thread():
    yield stop  # signal handlers can only be installed from the main thread
    return
  previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
  try:
    yield stop
  finally:
    signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def stop_signal():
  """Within the block, `stopped(step) -> bool`, called once after every step: True once
  SIGTERM arrived. With several processes, jax.distributed's preemption sync (which
  handles SIGTERM itself) makes it True at the same step in all of them, so they save
  that step together."""
  if jax.process_count() > 1:
    yield multihost_utils.reached_preemption_sync_point
    return
  with sigterm_flag() as sigterm:
    yield lambda step: sigterm.is_set()


# The metrics checked for finiteness, and what they say about the run.
WATCHED = {'loss': 'the loss', 'grad_norm': 'the gradients'}


# The train step's metrics between two log steps: their means (clu.metrics).
TrainMetrics = clu_metrics.Collection.create(
    loss=clu_metrics.Average.from_output('loss'),
    grad_norm=clu_metrics.Average.from_output('grad_norm'))


def mean_metrics(logged: list[tuple[int, dict]]) -> dict[str, float]:
  """The mean of each metric over (step, metrics) pairs."""
  merged = functools.reduce(lambda a, b: a.merge(b), [
      TrainMetrics.single_from_model_output(**m) for _, m in logged])
  return {name: float(value) for name, value in merged.compute().items()}


def check_finite(logged: list[tuple[int, dict]], last_good: int | None) -> None:
  """Raise NonFiniteError at the first (step, metrics) with a non-finite WATCHED value;
  `last_good` is the step of the last checkpoint saved."""
  for step, metrics in logged:
    bad = [name for name in WATCHED if not np.isfinite(metrics[name])]
    if bad:
      values = ', '.join(f'{name}={float(metrics[name])}' for name in bad)
      kept = 'none' if last_good is None else f'step {last_good}'
      raise NonFiniteError(
          f'{" and ".join(WATCHED[name] for name in bad)} became non-finite at step {step} '
          f'({values}); training stopped and nothing after it was saved (last good '
          f'checkpoint: {kept}). The run is deterministic, so resuming repeats it: lower '
          '--config.learning_rate or check the background images, and train into a new '
          '--workdir.')


class ProgressLine:
  """The console's line per log interval: step, loss (one per model), steps/s, ETA."""

  def __init__(self, step: int, total_steps: int):
    self.total_steps = total_steps
    self.last = (step, time.monotonic())

  def report(self, step: int, losses: list[float]) -> float:
    """Log the line; returns the steps per second since the last one."""
    now = time.monotonic()
    rate = (step - self.last[0]) / max(now - self.last[1], 1e-9)
    self.last = (step, now)
    eta = (self.total_steps - step) / rate if rate > 0 else 0.0
    logging.info('step %d/%d  loss %s  %.1f steps/s  ETA %dm%02ds', step, self.total_steps,
                 ' '.join(f'{loss:.5g}' for loss in losses), rate, eta // 60, eta % 60)
    return rate


def _train_until(state, run_step, *, workdirs: list[str], managers, writers, histories,
                 total_steps: int, log_every: int, checkpoint_every: int,
                 metrics_of: Callable, state_of: Callable,
                 configs: list[dict | None] | None = None):
  """The loop shared by `fit` and `fit_together`: run_step(state) -> (state, metrics)
  until `total_steps`; every log step, model k's mean metrics (metrics_of(metrics, k))
  go to writers[k] and histories[k]; every checkpoint step, state_of(state, k) is saved
  by managers[k], with configs[k] (the training config, recorded in the checkpoint). The
  metrics are checked for finiteness at both (NonFiniteError, naming
  the workdir when there are several); SIGTERM saves the current step and raises
  Preempted. Returns the final state."""
  step = int(np.ravel(jax.device_get(state.step))[0])  # (K,) steps, all equal, for K models
  configs = configs or [None] * len(managers)
  last_saved = managers[0].latest_step()
  pending = []
  clock = ProgressLine(step, total_steps)
  with stop_signal() as stopped, contextlib.ExitStack() as on_error:
    for manager in managers:
      on_error.enter_context(checkpoints.finish_saves_on_error(manager))
    while step < total_steps:
      state, metrics = run_step(state)
      step += 1
      pending.append((step, metrics))
      stop_now = stopped(step)
      save_now = step % checkpoint_every == 0 or step == total_steps or stop_now
      if step % log_every and not save_now:
        continue
      pending = [(s, jax.device_get(m)) for s, m in pending]
      per_model = [[(s, metrics_of(m, k)) for s, m in pending] for k in range(len(workdirs))]
      for workdir, logged in zip(workdirs, per_model):
        try:
          check_finite(logged, last_saved)
        except NonFiniteError as error:
          if len(workdirs) == 1:
            raise
          raise NonFiniteError(f'{workdir}: {error}') from None
      if step % log_every == 0 or step == total_steps:
        summaries = [mean_metrics(logged) for logged in per_model]
        pending = []
        rate = clock.report(step, [summary['loss'] for summary in summaries])
        for writer, history, summary in zip(writers, histories, summaries):
          history.append({'step': step, **summary})
          writer.write_scalars(step, {**{f'train/{k}': v for k, v in summary.items()},
                                      'steps_per_sec': rate})
      if save_now:
        for k, manager in enumerate(managers):
          checkpoints.save(manager, step, state_of(state, k), configs[k])
        last_saved = step
      if stop_now:
        for manager in managers:
          checkpoints.wait(manager)
        for writer in writers:
          writer.flush()
        raise Preempted(step, workdirs[0] if len(workdirs) == 1 else
                        f'each of ({", ".join(workdirs)})')
    for manager in managers:
      checkpoints.wait(manager)
  for writer in writers:
    writer.flush()
  return state


def fit(state: TrainState, train_step, backgrounds: np.ndarray, *, workdir: str,
        total_steps: int, log_every: int, checkpoint_every: int, keep_checkpoints: int,
        mesh: jax.sharding.Mesh, config: dict | None = None) -> tuple[TrainState, list[dict]]:
  """Train until `total_steps`, resuming from WORKDIR/checkpoints if it holds a checkpoint.

  state: the step-0 state; it and backgrounds, uint8 (N, P, P, 3), are put on every
  device of `mesh` once (the layout checkpoints are restored to). Returns the final state
  and the logged train metrics of this call, [{'step': s, 'loss': mean since the last
  log, ...}]. The loss and gradient norm are checked before every checkpoint and log
  (NonFiniteError); SIGTERM checkpoints the current step and raises Preempted. In a
  multi-process run every process calls this with the same values; process 0 logs.
  config: the training config (a dict), saved with every checkpoint.
  """
  state, backgrounds = replicate((state, backgrounds), mesh)
  manager = checkpoints.checkpoint_manager(workdir, keep_checkpoints)
  restored = checkpoints.restore(manager, state)  # onto the devices of `state`
  if restored is not None:
    logging.info('Resuming from checkpoint at step %d.', int(restored.step))
    state = restored

  is_lead = jax.process_index() == 0
  writer = EventWriter(workdir if is_lead else None)
  history = []
  state = _train_until(
      state, lambda s: train_step(s, backgrounds), workdirs=[workdir], managers=[manager],
      writers=[writer], histories=[history], total_steps=total_steps, log_every=log_every,
      checkpoint_every=checkpoint_every, metrics_of=lambda m, k: m,
      state_of=lambda s, k: s, configs=[config])
  return state, history


def fit_together(states: list[TrainState], multi_step, backgrounds: list[np.ndarray], *,
                 workdirs: list[str], total_steps: int, log_every: int,
                 checkpoint_every: int, keep_checkpoints: int, mesh: jax.sharding.Mesh,
                 configs: list[dict] | None = None
                 ) -> tuple[list[TrainState], list[list[dict]]]:
  """`fit` for K models trained by one vmapped step (multi_model.make_multi_train_step):
  each model resumes from, logs to and checkpoints into its own workdir as `fit` does.

  states: the K step-0 states; backgrounds: their uint8 (N_k, P, P, 3) sets; configs:
  their training configs, saved with their checkpoints. All K
  resume from checkpoints of one step, or all start afresh (CheckpointError otherwise).
  A non-finite loss in any model stops all K (NonFiniteError naming its workdir); SIGTERM
  checkpoints all K and raises Preempted. Returns the K final states and histories."""
  managers = [checkpoints.checkpoint_manager(w, keep_checkpoints) for w in workdirs]
  restored = [checkpoints.restore(m, s) for m, s in zip(managers, states)]
  resumed_at = [None if r is None else int(r.step) for r in restored]
  if len(set(resumed_at)) > 1:
    found = ', '.join(f'{w}: {s if s is not None else "none"}'
                      for w, s in zip(workdirs, resumed_at))
    raise checkpoints.CheckpointError(
        f'models trained together must resume from checkpoints of one step, but the '
        f'latest ones differ ({found}): train these points one by one (launch.py).')
  if resumed_at[0] is not None:
    logging.info('Resuming %d models from their checkpoints at step %d.', len(workdirs),
                 resumed_at[0])
    states = restored
  stacked = replicate(multi_model.stack_states(states), mesh)
  pool, starts, counts = replicate(multi_model.pool_backgrounds(backgrounds), mesh)

  is_lead = jax.process_index() == 0
  histories = [[] for _ in workdirs]
  stacked = _train_until(
      stacked, lambda s: multi_step(s, pool, starts, counts), workdirs=workdirs,
      managers=managers, writers=[EventWriter(w if is_lead else None) for w in workdirs],
      histories=histories, total_steps=total_steps, log_every=log_every,
      checkpoint_every=checkpoint_every,
      metrics_of=lambda m, k: {name: value[k] for name, value in m.items()},
      state_of=multi_model.unstack_state, configs=configs)
  return [multi_model.unstack_state(stacked, k) for k in range(len(workdirs))], histories
