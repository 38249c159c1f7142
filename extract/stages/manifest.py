"""The input table: read it, check it, give every row an id and a split, and write the prepared manifest.

Two kinds of bad input get two behaviours. A wrong table (missing column, duplicate id, bad
label, unknown split, bytes that are not UTF-8) stops `prepare` with errors naming the file,
the line and the fix, or, with `skip_bad_rows`, drops those rows and records why. A missing or
broken video is not a table error: `decode` records it per video and goes on.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from extract.core.config import ConfigError, build_config
from extract.core.errors import UserError
from extract.core.files import ID_RULE, HashCache, atomic_write, file_sha256, id_problem
from extract.core.split import SPLITS, make_split

LABEL_TYPES = ("binary", "multi_label", "multi_class", "number")
BINARY_VALUES = {"1": "1", "true": "1", "yes": "1", "0": "0", "false": "0", "no": "0"}
PREPARED_FIRST = ["id", "video", "split", "sha256"]
MAX_REPORTED = 20


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}. Fix: {self.fix}"


class ManifestError(UserError):
    """The table is wrong; `problems` says where and how to fix each thing."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        shown = [str(p) for p in problems[:MAX_REPORTED]]
        if len(problems) > MAX_REPORTED:
            shown.append(f"... and {len(problems) - MAX_REPORTED} more")
        super().__init__("\n".join(shown))


@dataclass
class Row:
    line: int  # 1-based line of the row in its file (where its record starts)
    values: dict[str, str]


@dataclass(frozen=True)
class PrepareConfig:
    manifest: str  # the input table: .csv, .tsv, .jsonl, or a PaddleVideo split file (.txt)
    videos: str = ""  # folder holding the videos, watched by DVC (see dvc.yaml)
    columns: dict[str, str] = field(default_factory=dict)  # label column -> one of LABEL_TYPES
    stratify: str | None = None  # label column whose proportions the made split keeps
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    skip_bad_rows: bool = False

    def validate(self, where: str) -> None:
        for column, kind in self.columns.items():
            if kind not in LABEL_TYPES:
                raise ConfigError(f"{where}.columns.{column}: {kind!r} is not one of {list(LABEL_TYPES)}")
        if self.stratify is not None and self.stratify not in self.columns:
            raise ConfigError(f"{where}.stratify: {self.stratify!r} must be one of the label columns in `columns`")
        if len(self.split_fractions) != 3 or min(self.split_fractions) < 0 or sum(self.split_fractions) <= 0:
            raise ConfigError(f"{where}.split_fractions: need three non-negative numbers (train, val, test)")


def prepare_config(values: dict) -> PrepareConfig:
    values = dict(values)
    if "split_fractions" in values:
        values["split_fractions"] = tuple(values["split_fractions"])
    return build_config(PrepareConfig, values, "params.yaml prepare")


def read_table(path: str | Path) -> list[Row]:
    """Rows of a CSV, TSV, JSONL or PaddleVideo split file (`file<TAB>title<TAB>label1,label2`)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError([Problem(path, 0, "manifest not found", "point prepare.manifest at an existing table")])
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError(
            [
                Problem(
                    path,
                    line,
                    f"byte 0x{raw[exc.start]:02x} is not valid UTF-8 (in a caption?)",
                    "save the table as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`",
                )
            ]
        ) from None
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, text, "\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path, text)
    if suffix in (".txt", ".list"):
        return _read_paddle(path, text)
    raise ManifestError(
        [
            Problem(
                path,
                0,
                f"unknown table format {suffix!r}",
                "use .csv, .tsv, .jsonl, or a PaddleVideo split file ending in .txt",
            )
        ]
    )


def _read_delimited(path: Path, text: str, delimiter: str) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [name.strip() for name in (reader.fieldnames or [])]
    reader.fieldnames = header
    rows, problems = [], []
    start = reader.line_num + 1
    for record in reader:
        if None in record:
            problems.append(
                Problem(
                    path,
                    start,
                    f"{len(header) + len(record[None])} fields, header has {len(header)}",
                    "quote fields that contain the delimiter",
                )
            )
        elif any(value is None for value in record.values()):
            problems.append(
                Problem(
                    path,
                    start,
                    f"fewer fields than the {len(header)} in the header",
                    "fill every column (leave a value empty between delimiters)",
                )
            )
        elif any(v.strip() for v in record.values()):
            rows.append(Row(start, {k: v.strip() for k, v in record.items()}))
        start = reader.line_num + 1
    if problems:
        raise ManifestError(problems)
    return rows


def _read_jsonl(path: Path, text: str) -> list[Row]:
    rows, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(path, number, f"not JSON ({exc.msg})", "write one JSON object per line"))
            continue
        if not isinstance(record, dict):
            problems.append(Problem(path, number, "not a JSON object", "write one JSON object per line"))
            continue
        rows.append(Row(number, {str(k): _json_cell(v) for k, v in record.items()}))
    if problems:
        raise ManifestError(problems)
    return rows


def _json_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v).strip() for v in value)
    return str(value).strip()


def _read_paddle(path: Path, text: str) -> list[Row]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) > 3:
            raise ManifestError(
                [
                    Problem(
                        path,
                        number,
                        f"{len(fields)} tab-separated fields, expected at most 3",
                        "write `file<TAB>title<TAB>label1,label2` per line",
                    )
                ]
            )
        fields += [""] * (3 - len(fields))
        rows.append(Row(number, {"video": fields[0].strip(), "text": fields[1].strip(), "labels": fields[2].strip()}))
    return rows


def default_id(video: str, manifest_dir: Path) -> str:
    """`video` without its extension, relative folder kept, so `a/x.mp4` and `b/x.mp4` never collide."""
    path = Path(video)
    resolved = path if path.is_absolute() else manifest_dir / path
    rel = os.path.relpath(resolved, manifest_dir)
    if rel.startswith(".."):
        rel = str(Path(os.path.abspath(resolved))).lstrip("/")
    return Path(rel).with_suffix("").as_posix()


def video_rows(videos: list[str], manifest: str | None, root: Path) -> list[dict[str, str]]:
    """Prepared rows for videos named on a command line: a table (checked as `prepare` checks it) or
    bare files.

    Bare files get the ids a manifest in `root` would give them (path without extension, folders
    kept), so `a/x.mp4` and `b/x.mp4` stay two videos.
    """
    if manifest:
        return prepare(PrepareConfig(manifest=manifest), root=root).rows
    rows = []
    for video in videos:
        path = (root / video).resolve()
        if why := id_problem(default_id(video, root)):
            raise UserError(f"{video}: its id {default_id(video, root)!r} {why}; rename the file or use --manifest")
        rows.append(
            {
                "id": default_id(video, root),
                "video": str(path),
                "sha256": file_sha256(path) if path.is_file() else "",
            }
        )
    return rows


def _check_label(kind: str, value: str) -> tuple[str | None, str]:
    """(normalized value or None, why not) for one label cell."""
    if kind == "binary":
        normal = BINARY_VALUES.get(value.lower())
        return normal, f"{value!r} is not a binary label; use one of true/false/1/0/yes/no"
    if kind == "multi_label":
        names = [name.strip() for name in value.split(",") if name.strip()]
        return ",".join(dict.fromkeys(names)), ""
    if kind == "multi_class":
        return (value or None), "empty class name; every row needs a class"
    try:
        number = float(value)
    except ValueError:
        return None, f"{value!r} is not a number"
    return (value if np.isfinite(number) else None), f"{value!r} is not a finite number"


def _stratify_sets(rows: list[dict[str, str]], column: str, kind: str) -> list[frozenset[str]]:
    values = [row[column] for row in rows]
    if kind == "multi_label":
        return [frozenset(v.split(",")) - {""} for v in values]
    if kind == "number":  # stratify a numeric target by its quartile
        numbers = np.asarray(values, dtype=np.float64)
        cuts = np.quantile(numbers, [0.25, 0.5, 0.75])
        return [frozenset({f"q{int(np.searchsorted(cuts, x, 'right'))}"}) for x in numbers]
    return [frozenset({v}) for v in values]


@dataclass
class Prepared:
    rows: list[dict[str, str]]
    columns: list[str]
    rejected: list[Problem]
    unwatched: list[str]  # ids of videos outside prepare.videos: DVC will not notice when they change


def prepare(config: PrepareConfig, root: Path | None = None, hashes: HashCache | None = None) -> Prepared:
    """Validate the table, resolve paths, assign ids, hash videos and make a split if there is none.

    `hashes` remembers each video's sha256 by size and modification time, so a rerun after adding
    videos reads the new files only."""
    root = Path(root or Path.cwd()).resolve()
    path = Path(config.manifest)
    table = read_table(path)
    manifest_dir = path.resolve().parent
    header = list(dict.fromkeys(k for row in table for k in row.values))
    missing = [c for c in ["video", *config.columns] if c not in header]
    if missing:
        fixes = {"video": "add a `video` column holding each file's path (relative to the table's folder)"}
        raise ManifestError(
            [
                Problem(
                    path,
                    1,
                    f"required column {c!r} is missing (columns: {header})",
                    fixes.get(c, f"add a {c!r} column, or remove it from prepare.columns in params.yaml"),
                )
                for c in missing
            ]
        )
    has_split = "split" in header
    problems: list[Problem] = []
    kept: list[dict[str, str]] = []
    first_line: dict[str, int] = {}
    for row in table:
        values = dict(row.values)
        bad = []
        if not values.get("video"):
            bad.append(Problem(path, row.line, "empty `video`", "give the path of the video file"))
        else:
            resolved = Path(values["video"]) if Path(values["video"]).is_absolute() else manifest_dir / values["video"]
            values["id"] = values.get("id") or default_id(values["video"], manifest_dir)
            values["video"] = _display_path(resolved, root)
            if why := id_problem(values["id"]):
                bad.append(Problem(path, row.line, f"id {values['id']!r} {why}", f"change the id: {ID_RULE}"))
            elif values["id"] in first_line:
                used = f"id {values['id']!r} already used on line {first_line[values['id']]}"
                bad.append(Problem(path, row.line, used, "give each row a unique `id` (or unique video paths)"))
            else:
                first_line[values["id"]] = row.line
        for column, kind in config.columns.items():
            normal, why = _check_label(kind, values.get(column, ""))
            if normal is None:
                bad.append(Problem(path, row.line, f"column {column!r}: {why}", f"correct the {kind} label"))
            else:
                values[column] = normal
        if has_split:
            split = values.get("split", "").strip().lower()
            if split not in SPLITS:
                bad.append(
                    Problem(
                        path,
                        row.line,
                        f"unknown split value {values.get('split')!r}",
                        f"use one of {', '.join(SPLITS)}, or drop the column to let prepare make a split",
                    )
                )
            values["split"] = split
        if bad:
            problems.extend(bad)
        else:
            kept.append(values)
    if problems and not config.skip_bad_rows:
        raise ManifestError(problems)
    if not has_split:
        sets = None
        if config.stratify:
            sets = _stratify_sets(kept, config.stratify, config.columns[config.stratify])
        for values, split in zip(kept, make_split(sets, len(kept), config.split_fractions, config.seed), strict=True):
            values["split"] = split
    watched = (root / config.videos).resolve() if config.videos else None
    unwatched = []
    for values in kept:
        video = Path(values["video"]) if Path(values["video"]).is_absolute() else root / values["video"]
        values["sha256"] = "" if not video.is_file() else hashes.sha256(video) if hashes else file_sha256(video)
        if watched and not video.resolve().is_relative_to(watched):
            unwatched.append(values["id"])
    columns = PREPARED_FIRST + [c for c in header if c not in PREPARED_FIRST]
    return Prepared(kept, columns, problems, unwatched)


def _display_path(path: Path, root: Path) -> str:
    """Relative to the project root when inside it (so clones elsewhere still work), else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return str(absolute)


def write_prepared(prepared: Prepared, out_dir: str | Path) -> Path:
    """Write manifest.csv and rejected.csv (rows skipped with their reason) atomically into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.csv"
    write_csv(manifest_path, prepared.columns, prepared.rows)
    rejected = [
        {"file": str(p.file), "line": str(p.line), "problem": p.message, "fix": p.fix} for p in prepared.rejected
    ]
    write_csv(out_dir / "rejected.csv", ["file", "line", "problem", "fix"], rejected)
    return manifest_path


def write_csv(path: str | Path, columns: list[str], rows: list[dict[str, str]]) -> Path:
    """A table with a header, written atomically; columns not listed are left out."""
    with atomic_write(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def read_prepared(path: str | Path) -> list[dict[str, str]]:
    """Rows of a prepared manifest (written by `prepare`, so already valid)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError([Problem(path, 0, "prepared manifest not found", "run `python -m extract prepare` first")])
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
