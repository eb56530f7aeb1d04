"""A workdir: one grid point's folder, its lock and its records.

WORKDIR/config.json records the config a run trained with (a copy is saved with every
checkpoint); a run whose training fields differ is refused, or, on purpose, continued
with the old record kept as config.before-step-<N>.json.

A workdir serves one run at a time: WORKDIR/run.lock names the process that writes. The
lock is a file created exclusively (O_EXCL) holding the holder's host, PID, start
time and purpose; it is removed when the block that took it ends, however it ends. A
lock whose PID is dead on this host (a killed run) is taken over with a warning; one held
by a live process, or by another host, refuses the new run with one line. In a run over
several processes, process 0 holds it for all of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import shutil
import socket
import time

import jax

from jaxderain import distributed
from jaxderain.configs import grid
from jaxderain.errors import ConfigError, NotFoundError, WorkdirBusy, WorkdirError
from jaxderain.train import checkpoints

LOCK_NAME = 'run.lock'
CONFIG_NAME = 'config.json'
EVAL = 'eval'  # WORKDIR/eval/<test set>.json and .png: eval/evaluate.py


def alive(pid: int) -> bool:
  """Whether process `pid` runs on this host."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, owned by another user
    return True
  return True


def _read(path: pathlib.Path) -> dict:
  try:
    holder = json.loads(path.read_text())
    return holder if isinstance(holder, dict) else {}
  except (OSError, ValueError):
    return {}


def _try_create(path: pathlib.Path, record: dict) -> bool:
  try:
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(descriptor, 'w') as lock:
    json.dump(record, lock)
  return True


def _acquire(path: pathlib.Path, record: dict, flag: str) -> bool:
  """Take the lock; False if this process holds it already. Raises WorkdirBusy, naming
  `flag`, the option that picks another folder."""
  for _ in range(3):  # a stale lock is removed, then created anew
    if _try_create(path, record):
      return True
    holder = _read(path)
    same_host = holder.get('host') == record['host']
    if same_host and holder.get('pid') == record['pid']:
      return False  # nested: this process holds it
    if same_host and isinstance(holder.get('pid'), int) and not alive(holder['pid']):
      logging.warning('Taking over the lock of %s from PID %d (%s since %s), which is no '
                      'longer running.', path.parent, holder['pid'],
                      holder.get('purpose', '?'), holder.get('started', '?'))
      path.unlink(missing_ok=True)
      continue
    if not holder:  # being written this instant, or unreadable: look again
      time.sleep(0.1)
      continue
    raise WorkdirBusy(
        f'{path.parent} is in use: {holder.get("purpose", "a run")} by PID '
        f'{holder.get("pid")} on {holder.get("host")} since {holder.get("started")}. Wait '
        f'for it to finish or stop it, or pass another {flag}; if that process is gone, '
        f'delete {path}.')
  raise WorkdirBusy(f'{path} cannot be taken (it is unreadable): delete it if no run is '
                    'using the workdir.')


def lock_holder(workdir) -> dict | None:
  """Who holds WORKDIR's lock ({'host', 'pid', 'purpose', 'started'}), or None when no
  live process does (no lock, or one left by a process gone from this host)."""
  holder = _read(pathlib.Path(workdir) / LOCK_NAME)
  if not holder:
    return None
  if holder.get('host') == socket.gethostname() and isinstance(holder.get('pid'), int):
    return holder if alive(holder['pid']) else None
  return holder  # another host's: taken as live


def ensure_writable(folder, needed_bytes: int, what: str, flag: str = '--workdir') -> None:
  """Create `folder` if needed and fail (WorkdirError, one line naming `flag`, the option
  to change) unless a file can be written in it and its disk has `needed_bytes` free for
  `what` (e.g. 'the checkpoints')."""
  folder = pathlib.Path(folder).absolute()
  try:
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f'.write_probe.{os.getpid()}.{jax.process_index()}'
    probe.write_bytes(b'0')
    probe.unlink()
  except OSError as error:
    raise WorkdirError(f'{folder} is not writable ({error.strerror}): pass a {flag} you can '
                       'write to, or fix its permissions.') from None
  free = shutil.disk_usage(folder).free
  if free < needed_bytes:
    raise WorkdirError(f'the disk of {folder} has {free / 2**20:.0f} MiB free but {what} '
                       f'need about {needed_bytes / 2**20:.0f} MiB: free space or pass a '
                       f'{flag} on another disk.')


@contextlib.contextmanager
def hold(workdir, purpose: str, flag: str = '--workdir'):
  """Hold WORKDIR's lock for the block (`purpose`, e.g. 'training', names it to others;
  `flag`, the option that picks the folder, is named in errors). A workdir the lock
  created and the block left empty (it failed early) is removed."""
  check_workdir_path(workdir)
  if jax.process_index() != 0:
    yield
    return
  path = pathlib.Path(workdir) / LOCK_NAME
  record = {'host': socket.gethostname(), 'pid': os.getpid(), 'purpose': purpose,
            'started': time.strftime('%Y-%m-%d %H:%M:%S %Z')}
  created = not path.parent.exists()
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    taken = _acquire(path, record, flag)
  except OSError as error:  # e.g. a file there, no permission, a read-only filesystem
    raise WorkdirError(f'{workdir} is not writable ({error.strerror}): pass a {flag} you '
                       'can write to, or fix its permissions.') from None
  try:
    yield
  finally:
    if taken and _read(path).get('pid') == record['pid']:
      path.unlink(missing_ok=True)
      if created and not any(path.parent.iterdir()):
        path.parent.rmdir()


def check_workdir_path(workdir) -> None:
  """Refuse a URL as WORKDIR: the workdir is read and written as a local path."""
  if '://' in str(workdir):
    raise WorkdirError(f'--workdir={workdir} is a URL, but the workdir must be a folder path: '
                       'mount the bucket (e.g. gcsfuse BUCKET /mnt/BUCKET) and pass a folder '
                       'under the mount point.')


def latest_step(workdir) -> int | None:
  """The step of WORKDIR's latest checkpoint; None if it holds none."""
  return checkpoints.latest_step(pathlib.Path(workdir) / checkpoints.FOLDER)


def recorded_config(workdir) -> dict | None:
  """The config a run was trained with: WORKDIR/config.json, or, when that file is lost,
  the copy saved with the latest checkpoint (written back to config.json, with a
  warning); None for a workdir with neither."""
  recorded = pathlib.Path(workdir) / CONFIG_NAME
  if not recorded.is_file():
    saved = checkpoints.recorded_config(pathlib.Path(workdir) / checkpoints.FOLDER)
    if saved is not None and jax.process_index() == 0:
      logging.warning('%s was missing: restored it from the latest checkpoint.', recorded)
      recorded.write_text(json.dumps(saved, indent=1))
    return saved
  try:
    config = json.loads(recorded.read_text())
  except ValueError:
    config = None
  if not isinstance(config, dict):
    raise WorkdirError(f'{recorded} is not a config (a JSON object of fields): delete it to '
                       'restore it from the latest checkpoint, or move the workdir away to '
                       'start afresh.')
  return config


def config_changes(config, workdir) -> list[str]:
  """'field: recorded -> given' for each training field of `config` (a ConfigDict) that
  differs from the config WORKDIR records (none if it records none)."""
  recorded = recorded_config(workdir)
  return [] if recorded is None else grid.SCHEMA.training_changes(recorded, config)


def check_workdir_config(config, workdir, allow_change: bool = False) -> list[str]:
  """Refuse a config whose training fields differ from the one WORKDIR was trained with;
  with `allow_change`, warn instead. Returns the changes."""
  changes = config_changes(config, workdir)
  if changes and not allow_change:
    shown = '; '.join(changes[:3]) + (f'; {len(changes) - 3} more' if len(changes) > 3 else '')
    raise ConfigError(
        f'{workdir} was trained with a different config ({shown}): use a new '
        '--workdir, the recorded config (WORKDIR/config.json), or pass '
        '--allow_config_change to continue this run with the new values on purpose.')
  if changes:
    logging.warning('Continuing %s with a changed config: %s', workdir, '; '.join(changes))
  return changes


def prepare_for_training(config, workdir, state, allow_change: bool = False) -> None:
  """Make WORKDIR ready to train `config` from `state` (its TrainState, for the size of
  a checkpoint), in every process of the run: the disk holds keep_checkpoints + 1
  checkpoints, the config matches the recorded one (or the change is allowed), every
  process sees the folder, and process 0 records the config (an earlier, changed record
  is kept as config.before-step-<N>.json). Call it holding the workdir's lock."""
  workdir = pathlib.Path(workdir)
  needed = sum(leaf.nbytes for leaf in jax.tree.leaves(state)) * (config.keep_checkpoints + 1)
  ensure_writable(workdir / checkpoints.FOLDER, needed, 'the checkpoints')
  changes = check_workdir_config(config, workdir, allow_change)
  resumed_at = checkpoints.latest_step(workdir / checkpoints.FOLDER)
  if missing := distributed.processes_not_seeing(workdir / checkpoints.FOLDER):
    raise WorkdirError(f'the workdir {workdir} is not shared: processes {missing} do not see '
                       "process 0's files in it. Pass a --workdir on a filesystem every host "
                       'mounts (NFS, Filestore, a gcsfuse-mounted bucket).')
  distributed.barrier(f'every process has read {workdir / CONFIG_NAME}')
  if jax.process_index() == 0:
    if changes:
      (workdir / CONFIG_NAME).replace(workdir / f'config.before-step-{resumed_at}.json')
    (workdir / CONFIG_NAME).write_text(config.to_json(indent=1))


@contextlib.contextmanager
def training(workdir, config, state, allow_change: bool = False):
  """Hold WORKDIR for training `config` from `state` (prepare_for_training) for the
  block."""
  with hold(workdir, 'training'):
    prepare_for_training(config, workdir, state, allow_change)
    yield


@contextlib.contextmanager
def evaluation(workdir, config, allow_change: bool = False):
  """Hold WORKDIR for evaluating `config` for the block, which gets the folder of the
  evaluation's files (WORKDIR/eval): it must hold a checkpoint (NotFoundError) trained
  with the config's training fields (check_workdir_config)."""
  workdir = pathlib.Path(workdir)
  with hold(workdir, 'evaluation'):  # before reading checkpoints in use
    check_workdir_config(config, workdir, allow_change)
    if checkpoints.latest_step(workdir / checkpoints.FOLDER) is None:
      raise NotFoundError(f'No checkpoint in {workdir / checkpoints.FOLDER}: train this grid '
                          'point first (launch.py --mode=train with the same --workdir).')
    yield workdir / EVAL
