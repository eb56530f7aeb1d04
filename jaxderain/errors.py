"""The errors a user can cause, in one hierarchy.

Every bad input (config, image, checkpoint, workdir, data, cluster) raises a UserError
whose message is one line naming the problem and the fix; the command lines print it
as `error: <message>` and exit 1 (jaxderain/cli.py). Any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
  """A bad input; the message names it and the fix."""


class ConfigError(UserError, ValueError):
  """A config or flag that cannot run; the message names the field and the fix."""


class ImageError(UserError, ValueError):
  """A file that cannot be used as an image; the message names the file and the fix."""


class DataError(UserError, ValueError):
  """A dataset, category or folder of images that cannot be used."""


class NotFoundError(UserError, FileNotFoundError):
  """A file or folder the command needs is missing (a checkpoint, a config, an input)."""


class MissingPackage(UserError, ImportError):
  """An optional package a command needs is not installed (e.g. torch for converting)."""


class CheckpointError(UserError, ValueError):
  """A checkpoint that cannot be written or restored; the message names it and the fix."""


class SaveError(CheckpointError):
  """A checkpoint save failed (e.g. the disk is full); the message names its step and the
  last good checkpoint."""


class WorkdirError(UserError, ValueError):
  """A workdir that cannot be used; the message names it and the fix."""


class WorkdirBusy(WorkdirError):
  """Another process holds the workdir; the message names it and what to do."""


class NonFiniteError(UserError, RuntimeError):
  """The loss, the gradients or a model's outputs stopped being finite; nothing computed
  from them is saved."""


class DistributedError(UserError, RuntimeError):
  """The processes of a multi-process run cannot start together; the message says why."""


# A command stopped by SIGTERM exits with the shell's code for it, so schedulers requeue it.
PREEMPTED_EXIT_CODE = 143


class Preempted(Exception):
  """Not an error: SIGTERM arrived and the state was checkpointed at `step`; rerunning
  the command resumes there."""

  def __init__(self, step: int, workdir: str):
    super().__init__(f'stopped by SIGTERM at step {step}; a checkpoint of that step is in '
                     f'{workdir}/checkpoints. Rerun the same command to resume.')
    self.step = step


def first_line(error: BaseException, limit: int = 300) -> str:
  """The first line of an error's message (at most `limit` characters)."""
  text = str(error).strip().splitlines()
  return text[0][:limit] if text else type(error).__name__


def capped(items: Iterable, what: str, limit: int = 3) -> str:
  """'312 keys, e.g. a, b, c' for a long list (what='keys'); all of them when short."""
  items = [str(item) for item in items]
  if len(items) <= limit:
    return ', '.join(items)
  return f'{len(items)} {what}, e.g. {", ".join(items[:limit])}'
