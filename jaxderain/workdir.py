"""A workdir serves one run at a time: WORKDIR/run.lock names the process that writes.

The lock is a file created exclusively (O_EXCL) holding the holder's host, PID, start
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
from jaxderain.errors import WorkdirError, WorkdirBusy

LOCK_NAME = 'run.lock'


def _alive(pid: int) -> bool:
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


def _acquire(path: pathlib.Path, record: dict) -> bool:
  """Take the lock; False if this process holds it already. Raises WorkdirBusy."""
  for _ in range(3):  # a stale lock is removed, then created anew
    if _try_create(path, record):
      return True
    holder = _read(path)
    same_host = holder.get('host') == record['host']
    if same_host and holder.get('pid') == record['pid']:
      return False  # nested: this process holds it
    if same_host and isinstance(holder.get('pid'), int) and not _alive(holder['pid']):
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
        f'for it to finish or stop it, or pass another --workdir; if that process is gone, '
        f'delete {path}.')
  raise WorkdirBusy(f'{path} cannot be taken (it is unreadable): delete it if no run is '
                    'using the workdir.')


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
def hold(workdir, purpose: str):
  """Hold WORKDIR's lock for the block (`purpose`, e.g. 'training', names it to others)."""
  if jax.process_index() != 0:
    yield
    return
  path = pathlib.Path(workdir) / LOCK_NAME
  record = {'host': socket.gethostname(), 'pid': os.getpid(), 'purpose': purpose,
            'started': time.strftime('%Y-%m-%d %H:%M:%S %Z')}
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    taken = _acquire(path, record)
  except (FileExistsError, NotADirectoryError, PermissionError) as error:
    raise WorkdirError(f'the workdir {workdir} is not writable ({error.strerror}): pass a '
                       '--workdir you can write to, or fix its permissions.') from None
  try:
    yield
  finally:
    if taken and _read(path).get('pid') == record['pid']:
      path.unlink(missing_ok=True)
