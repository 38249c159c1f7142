"""`reelfeat preset NAME`: add a preset's views, backbones and heads to params.yaml.

A preset (`reelfeat/presets/NAME.yaml`) is written like params.yaml, with entries under
`decode.views`, `backbones`, `encoders` and `heads`. Each entry's text, comments included, goes at
the end of the same section of params.yaml, whose own text and comments stay as they were; DVC then
has one stage per new backbone and head, each reading only its own params. Entries params.yaml
already has with the same values are skipped, so adding a preset twice changes nothing; an entry
with the same name and other values is refused. Every new entry is validated as its stage would.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from extract.core.config import ConfigError
from extract.core.files import atomic_write

PRESETS = Path(__file__).parent / "presets"
# where entries go: a section's path in params.yaml (each level indented two spaces)
SECTIONS = (("decode", "views"), ("backbones",), ("encoders",), ("heads",))


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESETS.glob("*.yaml"))


def _block(lines: list[str], path: tuple[str, ...]) -> tuple[int, int] | None:
    """(first line after `path`'s key, line after its last indented line) in YAML text, or None."""
    start, end = 0, len(lines)
    for depth, key in enumerate(path):
        indent = "  " * depth
        pattern = re.compile(rf"^{indent}{re.escape(key)}:\s*(#.*)?$")
        found = next((i for i in range(start, end) if pattern.match(lines[i])), None)
        if found is None:
            return None
        start, end = found + 1, _end_of(lines, found + 1, end, len(indent) + 2)
    return start, end


def _end_of(lines: list[str], start: int, limit: int, indent: int) -> int:
    """The line after the last one indented at least `indent` (trailing comments go with what follows)."""
    last = start
    for i in range(start, limit):
        text = lines[i]
        if not text.strip():
            continue
        if len(text) - len(text.lstrip(" ")) < indent:
            if text.lstrip().startswith("#"):
                continue
            break
        last = i + 1
    return last


def _entries(lines: list[str], start: int, end: int, indent: int) -> dict[str, list[str]]:
    """Each entry's name and its lines (key line, indented body and the comment lines before it)."""
    entries: dict[str, list[str]] = {}
    pending: list[str] = []
    current: list[str] | None = None
    key = re.compile(rf"^ {{{indent}}}([A-Za-z0-9_.-]+):")
    for text in lines[start:end]:
        match = key.match(text)
        if match:
            current = entries[match.group(1)] = [*pending, text]
            pending = []
        elif text.strip().startswith("#") and len(text) - len(text.lstrip(" ")) <= indent:
            pending.append(text)
        elif current is not None:
            current.append(text)
    return entries


def _node(params: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        params = params.get(key) or {}
    return params


def add_preset(name: str, params_path: str | Path) -> list[str]:
    """Add preset `name` to the params file; returns the entries added, as `section.name`."""
    preset_file = PRESETS / f"{name}.yaml"
    if not preset_file.is_file():
        raise ConfigError(f"no preset {name!r}; presets: {', '.join(preset_names())}")
    params_path = Path(params_path)
    if not params_path.is_file():
        raise ConfigError(f"{params_path}: params file not found; run from the project root or pass --params")
    preset_lines = preset_file.read_text(encoding="utf-8").splitlines()
    preset = yaml.safe_load("\n".join(preset_lines)) or {}
    lines = params_path.read_text(encoding="utf-8").splitlines()
    params = yaml.safe_load("\n".join(lines)) or {}
    added, insertions = [], []
    for path in SECTIONS:
        block = _block(preset_lines, path)
        if block is None:
            continue
        wanted, have = _node(preset, path), _node(params, path)
        texts = _entries(preset_lines, *block, indent=2 * len(path))
        new = []
        for key, value in wanted.items():
            where = ".".join((*path, key))
            if key in have and have[key] != value:
                raise ConfigError(
                    f"{params_path}: {where} already exists with other values than preset {name!r}'s: "
                    "rename or remove one of them"
                )
            if key not in have:
                new.append(key)
                added.append(where)
        if not new:
            continue
        target = _block(lines, path)
        if target is None:
            raise ConfigError(f"{params_path}: no `{'.'.join(path)}` section to add preset {name!r}'s entries to")
        insertions.append((target[1], [text for key in new for text in texts[key]]))
    if not added:
        return []
    for at, text in sorted(insertions, reverse=True):  # from the end, so earlier positions hold
        lines[at:at] = text
    merged = yaml.safe_load("\n".join(lines))
    for path in SECTIONS:  # the text went where intended: the sections are the union, nothing else moved
        if _node(merged, path) != {**_node(params, path), **_node(preset, path)}:
            raise ConfigError(f"{params_path}: could not add preset {name!r} to `{'.'.join(path)}`; add it by hand")
    _validate(merged, added)
    with atomic_write(params_path, encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return added


def _validate(params: dict[str, Any], added: list[str]) -> None:
    """Each new entry as its stage would read it, so a bad preset fails here and not mid-pipeline."""
    from extract.backbones import backbone_config
    from extract.media.views import view_from_params
    from heads.config import head_config

    for where in added:
        *section, key = where.split(".")
        values = _node(params, tuple(section))[key]
        if section == ["decode", "views"]:
            view_from_params(key, values)
        elif section == ["backbones"] or section == ["encoders"]:
            backbone_config(key, values, section[0])
        else:
            head_config(key, values)
