"""How this machine runs the work, as opposed to what the work is (params.yaml and the recipes).

`Settings` is built once at the command-line edge from the environment and the command's flags
(`Settings.from_environment(workers=args.workers)`), and passed down: the stages, `run` and
`predict` take it, and hand each part the value it needs (the decoders their ffmpeg time limit, the
store builder its shard size). This is the only module that reads reelfeat's environment variables,
so a notebook can pass its own `Settings` and nothing else in the process changes. None of these
values is part of a recipe: changing one never makes DVC rerun a stage. Where they shape a store
(the device and batch size the model ran with), the store records them.

| field | variable | default |
|---|---|---|
| device | REELFEAT_DEVICE | CUDA when present, else the CPU |
| decoder | REELFEAT_DECODER | `run`'s video decoder: auto (NVDEC beside a model on CUDA, else the CPU), cpu or nvdec |
| workers | REELFEAT_WORKERS | decode processes: one per core (0: in this process) |
| loader_workers | REELFEAT_LOADER_WORKERS | input-preparing processes: 0 on the CPU, cores-1 up to 8 beside a GPU |
| backend | REELFEAT_BACKEND | local (or ray) |
| ray_address | RAY_ADDRESS | a local Ray instance |
| ray_actors | REELFEAT_RAY_ACTORS | one model actor per GPU, else one per 2 CPUs |
| shard_mb | REELFEAT_SHARD_MB | 64 |
| checkpoint_s | REELFEAT_CHECKPOINT_S | 30 |
| ffmpeg_timeout_s | REELFEAT_FFMPEG_TIMEOUT | 300 |
| dvc_stage, dvc_root | DVC_STAGE, DVC_ROOT | set by `dvc repro`: where the stage's timing is recorded |
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass

from extract.core.config import ConfigError

BACKENDS = ("local", "ray")
DECODERS = ("auto", "cpu", "nvdec")


def cores() -> int:
    """The cores this machine has."""
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    device: str | None = None
    decoder: str = "auto"
    workers: int | None = None
    loader_workers: int | None = None
    backend: str = "local"
    ray_address: str | None = None
    ray_actors: int | None = None
    shard_mb: float = 64.0
    checkpoint_s: float = 30.0
    ffmpeg_timeout_s: float = 300.0
    dvc_stage: str | None = None
    dvc_root: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **flags: object) -> Settings:
        """The environment's values, then the flags that are not None over them, each checked."""
        environ = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values: dict[str, object] = {}
        for name, variable in VARIABLES.items():
            if environ.get(variable, "") != "":
                values[name] = _parsed(environ[variable], hints[name], variable)
        settings = cls(**values)
        settings.check(VARIABLES)
        return settings.overridden(**flags)

    def overridden(self, **flags: object) -> Settings:
        """These settings with each flag that is not None put over them (a command's `--workers 0` and the like)."""
        given = {name: value for name, value in flags.items() if value is not None}
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"no such setting(s): {unknown}")
        if not given:
            return self
        settings = dataclasses.replace(self, **given)
        settings.check({name: f"--{name.replace('_', '-')}" for name in given})
        return settings

    def check(self, names: Mapping[str, str]) -> None:
        """A ConfigError naming the variable or flag (from `names`) of the first value out of range."""
        problems = {
            "workers": self.workers is not None and self.workers < 0,
            "loader_workers": self.loader_workers is not None and self.loader_workers < 0,
            "ray_actors": self.ray_actors is not None and self.ray_actors < 1,
            "shard_mb": not self.shard_mb > 0,
            "checkpoint_s": not self.checkpoint_s >= 0,
            "ffmpeg_timeout_s": not self.ffmpeg_timeout_s > 0,
        }
        for name, bad in problems.items():
            if bad and name in names:
                raise ConfigError(f"{names[name]}: {getattr(self, name)!r} is out of range; {RANGES[name]}")
        if self.backend not in BACKENDS and "backend" in names:
            raise ConfigError(f"{names['backend']}: {self.backend!r} is not a backend; choose one of {list(BACKENDS)}")
        if self.decoder not in DECODERS and "decoder" in names:
            raise ConfigError(f"{names['decoder']}: {self.decoder!r} is not a decoder; choose one of {list(DECODERS)}")

    def decode_processes(self) -> int:
        """Decode processes: the workers setting, else one per core."""
        return cores() if self.workers is None else self.workers

    def loader_processes(self, device_type: str) -> int:
        """Processes preparing a model's inputs: the loader_workers setting, else by device. On the CPU
        the model already uses every core, so inputs are prepared inline (measured on 2 cores: 2 workers
        gave 70% of model-only throughput, inline 86%); a GPU is fed by the cores."""
        if self.loader_workers is not None:
            return self.loader_workers
        return min(8, max(1, cores() - 1)) if device_type == "cuda" else 0

    @property
    def shard_bytes(self) -> int:
        return int(self.shard_mb * (1 << 20))


VARIABLES = {
    "device": "REELFEAT_DEVICE",
    "decoder": "REELFEAT_DECODER",
    "workers": "REELFEAT_WORKERS",
    "loader_workers": "REELFEAT_LOADER_WORKERS",
    "backend": "REELFEAT_BACKEND",
    "ray_address": "RAY_ADDRESS",
    "ray_actors": "REELFEAT_RAY_ACTORS",
    "shard_mb": "REELFEAT_SHARD_MB",
    "checkpoint_s": "REELFEAT_CHECKPOINT_S",
    "ffmpeg_timeout_s": "REELFEAT_FFMPEG_TIMEOUT",
    "dvc_stage": "DVC_STAGE",
    "dvc_root": "DVC_ROOT",
}
RANGES = {
    "workers": "give 0 (in this process) or more processes",
    "loader_workers": "give 0 (in this process) or more processes",
    "ray_actors": "give 1 or more actors",
    "shard_mb": "give a size above 0 MB (64 is the default)",
    "checkpoint_s": "give 0 or more seconds (30 is the default)",
    "ffmpeg_timeout_s": "give a limit above 0 seconds (300 is the default)",
}


def _parsed(text: str, hint: object, variable: str) -> object:
    """An environment variable's text as the field's type, or a ConfigError naming the variable."""
    kinds = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
    kind = kinds[0]
    try:
        return kind(text) if kind is not str else text
    except ValueError:
        wanted = {int: "an integer", float: "a number"}[kind]
        raise ConfigError(f"{variable}: {text!r} is not {wanted}; unset it or give {wanted}") from None
