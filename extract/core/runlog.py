"""How long each stage of the last `dvc repro` took, for the report: `data/runs/<stage>.json`.

A command records itself only when DVC runs it (DVC sets DVC_STAGE to the stage's name, such as
`extract@resnet50`, and DVC_ROOT to the project), so tests and one-off commands leave no trace.
The files are not DVC outputs: a timing differs on every run and machine, and as an output it would
make every stage look changed to the stages after it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from pathlib import Path

from extract.core import project
from extract.core.files import write_text

RUNS = project.RUNS


class StageClock:
    """Times one command; `videos` is how many videos it computed (None where that means nothing)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.videos: int | None = None
        self.reused: int | None = None

    def count(self, computed: int, reused: int = 0) -> None:
        self.videos, self.reused = computed, reused

    def record(self, stage: str | None, root: str | None) -> Path | None:
        """Write the timing of `stage` under `root`/data/runs (DVC_STAGE and DVC_ROOT, the dvc_stage and
        dvc_root settings) when DVC runs it; returns the file."""
        if not stage or not root:
            return None
        seconds = time.time() - self.started
        entry = {
            "stage": stage,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime()),
            "seconds": round(seconds, 3),
            "videos": self.videos,
            "reused": self.reused,
            "machine": f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} cores",
        }
        name = re.sub(r"[^A-Za-z0-9@_.-]+", "_", stage)  # `dvc.yaml:train@x` and the like
        return write_text(Path(root) / RUNS / f"{name}.json", json.dumps(entry, indent=1) + "\n")


def read_runs(folder: str | Path = RUNS) -> list[dict]:
    """The recorded stages, in the order they finished."""
    entries = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(folder).glob("*.json"))]
    return sorted(entries, key=lambda e: e["finished"])
