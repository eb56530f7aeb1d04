"""A config's fields declared once: name, type, default, range and role.

configs/grid.py declares every field of a grid point as a `Field`; a `Schema` of them
builds the ConfigDict and derives everything else that depends on the fields:
- `check`: each field's type and range (one line naming the field and the fix);
- `together_key`: the fields points trained in one vmapped program must share (`shared`);
- `training_changes`: what a resumed run may not change (`trains`), with the value runs
  recorded before a field existed (`added`);
- `field`: a field by name, for code that sets one (the study's overrides).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import ml_collections

from jaxderain.errors import ConfigError

_MISSING = object()


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field. name: dotted ('eval.seed'); kind: int, float, str, bool, dict or
  tuple; default: a value, or a function of (grid point, scale table); low, high: a
  numeric range, bounds inclusive unless `exclusive` is 'low', 'high' or 'both';
  trains: a change alters what a run trains (a resumed run may not change it); shared:
  points trained together in one program must agree on it; added: the value runs
  recorded before the field existed used."""
  name: str
  kind: type
  default: Any
  low: float | None = None
  high: float | None = None
  exclusive: str = ''
  trains: bool = True
  shared: bool = False
  added: Any = _MISSING

  def value_for(self, point: dict, scale: dict):
    return self.default(point, scale) if callable(self.default) else self.default

  def read(self, config):
    node = config
    for part in self.name.split('.'):
      node = node[part]
    return node

  def write(self, config, value) -> None:
    """Set the field in `config` as --config.NAME=VALUE would: TypeError, ValueError or
    KeyError when the ConfigDict's types refuse the value."""
    *parents, leaf = self.name.split('.')
    node = config
    for part in parents:
      node = node[part]
    node[leaf] = value

  def check(self, value) -> None:
    """ConfigError naming the field, the valid values and the flag that sets it."""
    fix = f'set --config.{self.name}.'
    if self.kind in (int, float):
      numeric = (int,) if self.kind is int else (int, float)
      if isinstance(value, bool) or not isinstance(value, numeric):
        kind = 'an integer' if self.kind is int else 'a number'
        raise ConfigError(f'config.{self.name} must be {kind}, got {value!r}: {fix}')
      if not self._in_range(value):
        raise ConfigError(f'config.{self.name} must be {self._range_text()}, got '
                          f'{value!r}: {fix}')
    elif self.kind is tuple:
      if not isinstance(value, (tuple, list)):
        raise ConfigError(f'config.{self.name} must be a list, got {value!r}: {fix}')
    elif self.kind is dict:  # a ConfigDict once it is in the config
      if not isinstance(value, (dict, ml_collections.ConfigDict)):
        raise ConfigError(f'config.{self.name} must be a group of fields, got {value!r}: '
                          f'{fix}')
    elif not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value,
                                                                                  bool)):
      raise ConfigError(f'config.{self.name} must be a {self.kind.__name__}, got '
                        f'{value!r}: {fix}')

  def _in_range(self, value) -> bool:
    low_open, high_open = self.exclusive in ('low', 'both'), self.exclusive in ('high', 'both')
    if self.low is not None and (value <= self.low if low_open else value < self.low):
      return False
    return self.high is None or (value < self.high if high_open else value <= self.high)

  def _range_text(self) -> str:
    left = '(' if self.exclusive in ('low', 'both') else '['
    right = ')' if self.exclusive in ('high', 'both') else ']'
    if self.high is not None:
      return f'in {left}{self.low}, {self.high}{right}'
    return f'{">" if left == "(" else ">="} {self.low}'


def _flat(tree: dict, prefix: str = '') -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


@dataclasses.dataclass(frozen=True)
class Schema:
  """The fields of a config, in the order the config holds them."""
  fields: tuple[Field, ...]

  def field(self, name: str) -> Field:
    found = next((f for f in self.fields if f.name == name), None)
    if found is None:
      raise KeyError(f'no config field {name!r}')
    return found

  def build(self, point: dict, scale: dict) -> ml_collections.ConfigDict:
    """The ConfigDict of a grid point: every field at its default."""
    config = ml_collections.ConfigDict()
    for f in self.fields:
      *parents, leaf = f.name.split('.')
      node = config
      for parent in parents:
        if parent not in node:
          node[parent] = ml_collections.ConfigDict()
        node = node[parent]
      node[leaf] = f.value_for(point, scale)
    return config

  def check(self, config) -> None:
    """Every field's type and range (ConfigError for the first that is wrong)."""
    for f in self.fields:
      f.check(f.read(config))

  def together_key(self, config) -> str:
    """The shared fields of `config` as JSON: configs with equal keys can train in one
    program."""
    values = json.loads(config.to_json())
    return json.dumps({f.name: f.read(values) for f in self.fields if f.shared},
                      sort_keys=True)

  def first_unshared(self, config, other) -> tuple[str, Any, Any] | None:
    """(field, value in config, value in other) of the first shared field two configs
    differ on; None if they agree."""
    a, b = json.loads(config.to_json()), json.loads(other.to_json())
    for f in self.fields:
      if f.shared and f.read(a) != f.read(b):
        return f.name, f.read(a), f.read(b)
    return None

  def training_changes(self, recorded: dict, config) -> list[str]:
    """'field: recorded -> given' for every field that changes what trains (and any
    field this schema does not know), comparing flattened values; fields added after a
    run was recorded count at the value it used. A group whose fields all leave training
    alone (eval) is skipped whole, fields of older runs included."""
    not_training = [f.name for f in self.fields if not f.trains]
    tops = {f.name.split('.')[0] for f in self.fields if '.' in f.name}
    not_training += [t for t in tops if all(not f.trains for f in self.fields
                                            if f.name.startswith(f'{t}.'))]
    added = {f.name: f.added for f in self.fields if f.added is not _MISSING}
    before, now = {**added, **_flat(recorded)}, _flat(json.loads(config.to_json()))
    skip = lambda key: any(key == n or key.startswith(f'{n}.') for n in not_training)
    return [f'{k}: {before.get(k, "(absent)")} -> {now.get(k, "(absent)")}'
            for k in sorted(set(before) | set(now))
            if not skip(k) and before.get(k) != now.get(k)]
