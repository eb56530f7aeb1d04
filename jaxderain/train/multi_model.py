"""K grid points in one jitted program: the train step vmapped over a leading model axis.

The K models share what shapes the program: architecture and model size, loss, batch
and patch size, flips, optimizer schedule and rain range (one graphdef, one optax
transform). Each has its own parameters, optimizer state, root key (its seed) and
background set. The sets, of sizes N_k, are pooled into one uint8 (sum N_k, P, P, 3)
array and model k draws only from pool[starts[k] : starts[k] + counts[k]], so no set is
padded to the largest.

Model k follows its own single-model run (step.make_train_step, same config and seed)
up to float rounding: it sees the same batches and rain, but a vmapped convolution is a
grouped one. It pays only where one small model leaves the device idle: on an H100, for
K = 4-16, the cpu-scale ResNet trains 1.2-2.2x faster but the paper-scale one 3.5-6.6x
slower (grouped convolutions), and on a 2-core CPU it is slower too
(benchmarks/multi_model.py; benchmarks/results/multi_model_gpu.json). Off by default.
Imports jax, flax and optax only (no clu, orbax or data loading).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxderain import rain
from jaxderain.train.step import TrainState, make_step_function


def stack_states(states: Sequence[TrainState]) -> TrainState:
  """One TrainState whose every array has a leading model axis of size K = len(states)."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def unstack_state(stacked: TrainState, k: int) -> TrainState:
  """Model k's TrainState: index k of the leading model axis of every array."""
  return jax.tree.map(lambda leaf: leaf[k], stacked)


def pool_backgrounds(sets: Sequence[np.ndarray]):
  """(pool, starts, counts) of K uint8 (N_k, P, P, 3) background sets: the uint8
  (sum N_k, P, P, 3) concatenation and int32 (K,) offsets and sizes of each set in it."""
  counts = np.array([len(s) for s in sets], np.int32)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)
  return np.concatenate(sets), starts, counts


def make_multi_train_step(graphdef, loss_fn: Callable, tx: optax.GradientTransformation,
                          rain_range: rain.RainRange, batch_size: int, flips: bool,
                          mesh: jax.sharding.Mesh, compute_dtype=jnp.float32):
  """A jitted `step(stacked_state, pool, starts, counts) -> (stacked_state, metrics)`:
  one train step of each of K models; metrics: {'loss', 'grad_norm'}, float32 (K,).

  stacked_state: stack_states of K step.TrainStates (donated); pool, starts, counts:
  pool_backgrounds of their sets. Each model's batch is sharded over `mesh`'s 'data'
  axis as in make_train_step; the state and the pool are replicated."""
  step = make_step_function(graphdef, loss_fn, tx, rain_range, batch_size, flips, mesh,
                            compute_dtype)
  return jax.jit(jax.vmap(step, in_axes=(0, None, 0, 0)), donate_argnums=0)
