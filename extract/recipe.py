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
