"""The train state and the jitted train step: backgrounds on the device, rain made inside.

One step: sample background indices and flips from the step's key, synthesise the rain
layer R, form O = clip(B + R, 0, 1), run the model, take the loss and an optax update.
All randomness is `fold_in(key, step)`, so the data a step sees depends on the step
alone (not on process history), and resumed runs see the same data as uninterrupted ones.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxderain import rain


@flax.struct.dataclass
class TrainState:
  """step: int32 (); params / model_state: nnx.State of nnx.Param / everything else
  (e.g. batch statistics); opt_state: optax state; key: uint32 (2,) root key."""
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  key: jax.Array


def make_optimizer(learning_rate: float, b1: float, b2: float, total_steps: int,
                   final_learning_rate: float = 0.0) -> optax.GradientTransformation:
  """Adam with cosine annealing over the whole run (period = total steps)."""
  schedule = optax.cosine_decay_schedule(learning_rate, decay_steps=total_steps,
                                         alpha=final_learning_rate / learning_rate)
  return optax.adam(schedule, b1=b1, b2=b2)


def init_state(model: nnx.Module, tx: optax.GradientTransformation, key: jax.Array):
  """(graphdef, TrainState at step 0) for a freshly built model; `key` is the run's
  root training key (a raw uint32 (2,) key)."""
  graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                     opt_state=tx.init(params), key=key)
  return graphdef, state


def new_state(build: Callable[..., nnx.Module], options: dict, seed: int,
              tx: optax.GradientTransformation):
  """(graphdef, TrainState at step 0) of the model build(**options), from `seed`: its
  root key splits into the parameters' key and the run's training key."""
  init_key, train_key = jax.random.split(jax.random.PRNGKey(seed))
  return init_state(build(**options, rngs=nnx.Rngs(params=init_key)), tx, train_key)


def sample_batch(key, backgrounds, batch_size: int, flips: bool, start=0, count=None):
  """Clean backgrounds B: float32 (batch, P, P, 3) in [0, 1], drawn with replacement from
  the uint8 (N, P, P, 3) background set, each randomly flipped in H and W if `flips`.

  start, count: int32 scalars (may be traced) to draw from backgrounds[start:start+count]
  only, one model's share of a pool of several sets; default: the whole set."""
  k_idx, k_flip = jax.random.split(key)
  count = backgrounds.shape[0] if count is None else count
  index = start + jax.random.randint(k_idx, (batch_size,), 0, count)
  clean = backgrounds[index].astype(jnp.float32) / 255.0
  if flips:
    flip = jax.random.bernoulli(k_flip, 0.5, (2, batch_size))[:, :, None, None, None]
    clean = jnp.where(flip[0], clean[:, ::-1], clean)
    clean = jnp.where(flip[1], clean[:, :, ::-1], clean)
  return clean


def cast_floats(tree, dtype):
  """`tree` with every floating-point array cast to `dtype` (others unchanged)."""
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def make_step_function(graphdef, loss_fn: Callable, tx: optax.GradientTransformation,
                       rain_range: rain.RainRange, batch_size: int, flips: bool,
                       mesh: jax.sharding.Mesh, compute_dtype=jnp.float32):
  """The pure, un-jitted `step(state, backgrounds, start=0, count=None) -> (state,
  metrics)` that make_train_step jits (and multi_model vmaps); start and count select
  the model's share of the background set as in sample_batch. The batch is sharded over
  `mesh`'s 'data' axis.

  compute_dtype: the dtype of the model's forward and backward pass (mixed precision with
  bfloat16): parameters and optimizer state stay float32 (the master weights), the loss
  and gradients are float32. bfloat16 has float32's exponent range, so no loss scaling."""
  batch_sharding = NamedSharding(mesh, PartitionSpec('data'))

  def step(state: TrainState, backgrounds, start=0, count=None):
    key = jax.random.fold_in(state.key, state.step)
    k_background, k_rain = jax.random.split(key)
    clean = jax.lax.with_sharding_constraint(
        sample_batch(k_background, backgrounds, batch_size, flips, start, count),
        batch_sharding)
    height, width = clean.shape[1:3]
    rain_layer = jax.lax.with_sharding_constraint(
        rain.synthesize(k_rain, batch_size, height, width, rain_range), batch_sharding)
    rainy = jnp.clip(clean + rain_layer, 0.0, 1.0)

    def loss_of(params):
      model = nnx.merge(graphdef, cast_floats(params, compute_dtype), state.model_state,
                        copy=True)
      outputs = cast_floats(model(rainy.astype(compute_dtype)), jnp.float32)
      loss = loss_fn(outputs, rainy, clean)
      return loss, nnx.state(model, nnx.Not(nnx.Param))

    (loss, model_state), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(step=state.step + 1,
                              params=optax.apply_updates(state.params, updates),
                              model_state=model_state, opt_state=opt_state)
    return new_state, {'loss': loss, 'grad_norm': optax.tree.norm(grads)}

  return step


def make_train_step(graphdef, loss_fn: Callable, tx: optax.GradientTransformation,
                    rain_range: rain.RainRange, batch_size: int, flips: bool,
                    mesh: jax.sharding.Mesh, compute_dtype=jnp.float32):
  """A jitted `step(state, backgrounds) -> (state, metrics)`, batch sharded over `mesh`'s
  'data' axis; state and backgrounds are replicated. compute_dtype: see
  make_step_function."""
  step = make_step_function(graphdef, loss_fn, tx, rain_range, batch_size, flips, mesh,
                            compute_dtype)
  return jax.jit(step, donate_argnums=0)
