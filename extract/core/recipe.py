"""Recipes: how a store's rows were made, with paths left out.

A decoded store's recipe is its view (`{"view": {...}}`). A feature store's recipe is
`{"backbone": {model, dtype, family keys}, "weights": {name, source, sha256}, "preprocessing": {...},
"input": <recipe of what it read>}`, where the input is a decoded view, a manifest column
(`{"column": "text"}`) or Whisper transcripts (`{"transcripts": <the whisper store's recipe>}`).
It is enough to make the same rows again for new videos (`heads predict` does).

The `contract` of a recipe drops where the weights came from and keeps their sha256: a library
name and a local copy of the same file make the same rows. It is a store's reuse key, and what a
trained head checks every store it reads against.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """A store's recipe, typed: what made the rows (a decode `view`, a manifest `column`, Whisper
    `transcripts`, or a `backbone` with its `weights`, `preprocessing` and `input`), read by name
    instead of by string keys. `to_dict()` gives back the JSON form stores and checkpoints keep."""

    view: Mapping[str, Any] | None = None
    column: str | None = None
    transcripts: Recipe | None = None
    backbone: Mapping[str, Any] | None = None
    weights: Mapping[str, Any] | None = None  # name, source, sha256
    preprocessing: Mapping[str, Any] | None = None
    input: Recipe | None = None
    other: Mapping[str, Any] | None = None  # keys reelfeat does not make (an imported store's)

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Recipe:
        values = dict(values)
        nested = {key: cls.of(values.pop(key)) for key in ("transcripts", "input") if isinstance(values.get(key), dict)}
        known = {
            key: values.pop(key) for key in ("view", "column", "backbone", "weights", "preprocessing") if key in values
        }
        return cls(**known, **nested, other=values or None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.other or {})
        for key in ("view", "column", "backbone", "weights", "preprocessing"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for key in ("transcripts", "input"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key).to_dict()
        return out

    @property
    def key(self) -> str:
        """The recipe with paths left out, as JSON: equal for stores whose rows are made the same way."""
        return contract_json(self.to_dict())

    def difference(self, found: Recipe) -> str | None:
        """Where `found` differs from this recipe (paths aside), or None when it makes the same rows."""
        return first_difference(contract(self.to_dict()), contract(found.to_dict()))

    def columns_read(self) -> list[str]:
        """The manifest columns (captions) these rows read, at any depth."""
        found = [self.column] if self.column else []
        for inner in (self.transcripts, self.input):
            if inner is not None:
                found += inner.columns_read()
        return found


def contract(recipe: object) -> object:
    """The recipe with each `weights` reduced to its sha256."""
    if not isinstance(recipe, dict):
        return recipe
    return {
        key: value["sha256"] if key == "weights" and isinstance(value, dict) else contract(value)
        for key, value in recipe.items()
    }


def contract_json(recipe: dict) -> str:
    return json.dumps(contract(recipe), sort_keys=True)


def first_difference(expected: object, found: object, where: str = "") -> str | None:
    """The first key (dotted path) where two recipes differ, with both values; None when equal."""
    if isinstance(expected, dict) and isinstance(found, dict):
        for key in sorted(set(expected) | set(found)):
            path = f"{where}.{key}" if where else key
            if key not in found:
                return f"{path} is missing (the head's was {_short(expected[key])})"
            if key not in expected:
                return f"{path} is {_short(found[key])}, which the head's recipe has not"
            difference = first_difference(expected[key], found[key], path)
            if difference:
                return difference
        return None
    if expected != found:
        return f"{where or 'the recipe'} is {_short(found)} but the head was trained on {_short(expected)}"
    return None


def _short(value: object) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."
