"""The sweep on Ray: each point (or group of --together points) is one Ray task, run
wherever the cluster has room.

A task runs `python -m jaxderain.study.task` in a child process that owns the task's
devices (Ray sets CUDA_VISIBLE_DEVICES for a task asking for GPUs; the child inherits it
and dies with its worker), so a point trains and evaluates exactly as in the sequential
sweep, into the same OUT/points/<name>/ folder; the child's output is appended to
OUT/points/<name>/sweep.log. OUT must be a folder every node mounts at the same path.

- A child that ends on a user error: its points are failed (failed.json), not retried.
- A worker or node that dies, or a child killed by a signal or preempted (SIGTERM, exit
  143): Ray runs the task again, up to `retries` times, and the point resumes from its
  latest checkpoint.
- A child that crashes (a bug): its points are failed with the end of its log, not retried.

The driver holds OUT's lock (study run), so one sweep runs on OUT at a time and a point
lock held on another host when a task starts was left by an attempt on a lost node: it
is removed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import warnings

from jaxderain.errors import PREEMPTED_EXIT_CODE, ConfigError, MissingPackage, first_line
from jaxderain.study import grids, sweep
from jaxderain.study.folders import StudyFolder
from jaxderain.study.grids import Point
from jaxderain.workdir import LOCK_NAME, lock_holder

# Folders from the driver's environment a task's child needs, passed as absolute paths:
# the data, and JAX's persistent compilation cache (when set, points of one shape compile
# once for the whole sweep).
FORWARDED_ENV = ('JAXDERAIN_DATA_DIR', 'JAX_COMPILATION_CACHE_DIR')
_PR_SET_PDEATHSIG = 1


class Interrupted(Exception):
  """A task's child was killed or preempted: Ray runs the task again."""


def _die_with_parent() -> None:
  """In the child, before exec: be killed when the worker that started it dies (Linux)."""
  try:
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
  except (OSError, AttributeError):  # not Linux: a lost worker may leave its child running
    pass


def _last_line(log: pathlib.Path) -> str:
  try:
    lines = log.read_text(errors='replace').strip().splitlines()
  except OSError:
    return ''
  return lines[-1][:200] if lines else ''


def _clear_lock_of_earlier_attempt(workdir: pathlib.Path, wait_s: float = 15) -> None:
  """Before a task runs a point: a lock held on another host was left by an attempt on a
  lost node (OUT's lock means no other sweep runs), so it is removed; one held by a live
  process here is given `wait_s` to end (a child dying with its worker), after which the
  point's own lock check reports it."""
  holder = lock_holder(workdir)
  if holder is None:
    return
  if holder.get('host') == socket.gethostname():
    deadline = time.monotonic() + wait_s
    while lock_holder(workdir) is not None and time.monotonic() < deadline:
      time.sleep(0.5)
    return
  logging.warning('Removing the lock of %s left on %s by an earlier attempt: %s', workdir,
                  holder.get('host'), holder)
  (workdir / LOCK_NAME).unlink(missing_ok=True)


def run_task(encoded_points: str, out: str, together: int, env: dict) -> int:
  """Train and evaluate the points (grids.encode) in a child process; returns its exit
  status (0 or 1) and raises Interrupted when it was killed or preempted."""
  folders = [StudyFolder(out).point(p.name) for p in grids.decode(encoded_points)]
  for folder in folders:
    _clear_lock_of_earlier_attempt(folder.path)
  log = folders[0].log_file
  log.parent.mkdir(parents=True, exist_ok=True)
  with log.open('a') as stream:
    stream.write(f'--- {time.strftime("%Y-%m-%d %H:%M:%S %Z")} on {socket.gethostname()}\n')
    stream.flush()
    code = subprocess.run(
        [sys.executable, '-m', 'jaxderain.study.task', f'--out={out}',
         f'--todo={encoded_points}', f'--together={together}'],
        stdout=stream, stderr=subprocess.STDOUT, env={**os.environ, **env}, check=False,
        preexec_fn=_die_with_parent).returncode
  if code < 0 or code == PREEMPTED_EXIT_CODE:
    raise Interrupted(f'{folders[0].name}: the child ended with status {code}')
  if code != 0 and not all(f.is_done() or f.failure() for f in folders):
    for folder in folders:  # a crash: a bug, not retried
      if not folder.is_done():
        folder.record_failure(f'crashed with exit status {code} ({_last_line(log)}); its '
                              f'log: {log}')
  return code


def _check_reachable(address: str) -> None:
  """Fail at once (Ray itself retries for minutes) when HOST:PORT does not answer."""
  host, _, port = address.rpartition(':')
  try:
    with socket.create_connection((host, int(port)), timeout=10):
      return
  except (OSError, ValueError) as error:
    raise ConfigError(f'cannot reach the Ray cluster at --address={address} ({error}): pass '
                      "the head node's HOST:PORT (printed by `ray start --head`), auto for "
                      'the cluster started on this machine, or omit --address to start one '
                      'here.') from None


def _connect(address: str | None):
  try:
    import ray  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise MissingPackage('--engine=ray needs the ray package: pip install -r '
                         'requirements.txt (or pip install ray).') from None
  if address and address not in ('auto', 'local') and '://' not in address:
    _check_reachable(address)
  if not ray.is_initialized():
    try:
      with warnings.catch_warnings():  # JAX warns of any fork; Ray forks its own processes
        warnings.filterwarnings('ignore', message='os.fork', category=RuntimeWarning)
        ray.init(address=address or 'local', log_to_driver=False, logging_level=logging.WARNING,
                 include_dashboard=False)
    except ConnectionError as error:  # e.g. auto with no cluster on this machine
      raise ConfigError(f'cannot reach the Ray cluster at --address={address} '
                        f'({first_line(error)}): start it with `ray start --head`, or omit '
                        '--address to start one on this machine.') from None
  return ray


def _resources(ray, gpus_per_point: float | None, cpus_per_point: float) -> dict:
  """The resources of one task: `gpus_per_point` None means one GPU when the cluster has
  GPUs, none when it has not. Refuses requests the whole cluster cannot hold."""
  cluster = ray.cluster_resources()
  gpus = cluster.get('GPU', 0)
  if gpus_per_point is None:
    gpus_per_point = 1 if gpus else 0
  if gpus_per_point > gpus or cpus_per_point > cluster.get('CPU', 0):
    raise ConfigError(f'a point asks for {gpus_per_point:g} GPU(s) and {cpus_per_point:g} CPU(s) '
                      f'but the cluster has {gpus:g} GPU(s) and {cluster.get("CPU", 0):g} '
                      'CPU(s): lower --gpus_per_point / --cpus_per_point.')
  return {'num_gpus': gpus_per_point, 'num_cpus': cpus_per_point}


def run(points: list[Point], out, together: int = 1, address: str | None = None,
        gpus_per_point: float | None = None, cpus_per_point: float = 1,
        retries: int = 3) -> dict:
  """Run every point not done yet as Ray tasks on the cluster at `address` (None: a new
  one on this machine; 'auto': the one `ray start` made here; HOST:PORT); returns {'done',
  'skipped', 'failed'} like sweep.run. A progress bar counts points on stderr."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  out = pathlib.Path(out).absolute()
  study = StudyFolder(out)
  todo = [p for p in points if not study.point(p.name).is_done()]
  ray = _connect(address)
  remote = ray.remote(run_task).options(
      **_resources(ray, gpus_per_point, cpus_per_point), max_retries=retries,
      retry_exceptions=[Interrupted])
  # The tasks may start in another folder.
  env = {name: os.path.abspath(os.environ[name]) for name in FORWARDED_ENV
         if os.environ.get(name)}
  logging.info('Sweep on Ray: %d points, %d already done, %d to run; cluster: %s.',
               len(points), len(points) - len(todo), len(todo), ray.cluster_resources())
  pending = {remote.remote(grids.encode(group), str(out), together, env): group
             for group in sweep.groups(todo, out, together)}
  failures, done = {}, 0
  with tqdm(total=len(todo), unit='point', desc='sweep', dynamic_ncols=True) as bar:
    while pending:
      ready, _ = ray.wait(list(pending), num_returns=1, timeout=5)
      for ref in ready:
        group = pending.pop(ref)
        try:
          ray.get(ref)
        except ray.exceptions.RayError as error:  # lost more than `retries` times
          for point in group:
            study.point(point.name).record_failure(
                f'gave up after {retries + 1} attempts: {first_line(error)}')
        for point in group:
          folder = study.point(point.name)
          if folder.is_done():
            done += 1
          else:
            failures[point.name] = folder.failure() or 'not done'
            logging.error('Point %s failed: %s', point.name, failures[point.name])
        bar.update(len(group))
      running = sum(study.point(p.name).lock_holder() is not None for p in todo)
      if (counts := f'running {running}, failed {len(failures)}') != bar.postfix:
        bar.set_postfix_str(counts)
  return {'done': done, 'skipped': len(points) - len(todo), 'failed': failures}
