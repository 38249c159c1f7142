"""A head's configuration: `heads.<name>` in params.yaml, typed, with unknown keys rejected."""

from __future__ import annotations

import dataclasses
import itertools
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extract.core import project
from extract.core.config import ConfigError, build_config, coerce
from heads.kinds import KINDS

POOLS = ("mean", "max", "attention", "lstm", "transformer", "textcnn", "attentive_probe")
# attention heads when `heads` is not given: the transformer encoder's, and V-JEPA's attentive probe's
DEFAULT_HEADS = {"transformer": 4, "attentive_probe": 16}
HEAD_KINDS = ("trained", "zero_shot")
VIEW_MODES = ("pooled", "each")
# What `sweep:` may vary: the training values that leave the shared batches as they are (batch_size,
# seed and an input's max_len change which rows a batch holds, so they cannot share one), and an
# input's own options as "<input key>.<option>".
SWEPT_HEAD_KEYS = ("lr", "weight_decay", "dropout", "hidden", "epochs", "loss", "pos_weight")
SWEPT_INPUT_KEYS = ("hidden", "layers", "heads", "queries", "blocks", "self_blocks", "dropout", "filters", "windows")


@dataclass(frozen=True)
class InputConfig:
    """One feature store a head reads, and how its rows become a vector."""

    store: str  # a feature store folder: data/features/<backbone>
    # mean | max | attention (pooling) ; lstm | transformer | textcnn | attentive_probe (sequence encoders)
    pool: str = "mean"
    name: str = ""  # how other inputs refer to it (guide); default: the store's file stem
    max_len: int = 64  # rows kept per video: random rows while training, evenly spaced otherwise
    hidden: int = 128  # width of the sequence encoder (lstm: per direction)
    layers: int = 1  # lstm / transformer layers
    heads: int | None = None  # transformer / attentive_probe attention heads (default 4 / 16)
    guide: str | None = None  # lstm only: name of a pooled input that guides attention (PaddleVideo text_guide)
    windows: tuple[int, ...] = (2, 3, 4)  # textcnn window sizes
    filters: int = 128  # textcnn filters per window
    queries: int = 1  # attentive_probe: learned query tokens (their outputs side by side)
    blocks: int = 1  # attentive_probe: cross-attention blocks
    self_blocks: int = 0  # attentive_probe: self-attention blocks over the rows first (V-JEPA 2's probe: 3)
    dropout: float = 0.0  # attentive_probe: dropout in its attention and MLP

    @property
    def key(self) -> str:
        return self.name or Path(self.store).name

    def validate(self, where: str) -> None:
        if self.pool not in POOLS:
            raise ConfigError(f"{where}.pool: {self.pool!r} is not one of {list(POOLS)}")
        if self.guide and self.pool != "lstm":
            raise ConfigError(f"{where}.guide: only lstm inputs take a guide")
        if self.max_len < 1 or self.hidden < 1 or self.layers < 1:
            raise ConfigError(f"{where}: max_len, hidden and layers must be positive")
        if self.queries < 1 or self.blocks < 1 or (self.heads is not None and self.heads < 1):
            raise ConfigError(f"{where}: queries, blocks and heads must be positive")
        if self.self_blocks < 0:
            raise ConfigError(f"{where}.self_blocks: {self.self_blocks}; give 0 or more")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{where}.dropout: {self.dropout} is not in [0, 1)")

    def attention_heads(self, width: int) -> int:
        """The heads of this input's attention over rows `width` wide (they must divide it)."""
        heads = self.heads or DEFAULT_HEADS.get(self.pool, 4)
        if width % heads:
            raise ConfigError(
                f"heads.inputs {self.key}: {heads} attention heads do not divide its width {width}; "
                f"set heads: to a divisor of {width}"
            )
        return heads


@dataclass(frozen=True)
class HeadConfig:
    """Every key of `heads.<name>`; a checkpoint carries this back."""

    inputs: tuple[InputConfig, ...]
    task: str
    target: str | tuple[str, ...]  # a manifest column, or several for multi_regression
    manifest: str = str(project.MANIFEST)
    hidden: tuple[int, ...] = (256,)  # MLP over the concatenated inputs; () is a linear probe
    dropout: float = 0.2
    loss: str = ""  # default by task: bce, ce or mse
    pos_weight: float | None = None  # binary / multi_label: weight of positives (imbalance)
    zscore: bool = True  # regression: train on z-scored targets, report in original units
    quantiles: int = 4  # quantile: classes cut at the training split's quantiles
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 20
    batch_size: int = 32
    seed: int = 0
    bootstrap: int = 1000  # resamples for the 95% intervals of headline metrics
    # zero_shot: nothing is trained; each label's prompt is embedded by an image-text model's text tower
    # and a video scores the scaled cosine of its pooled rows with it (heads/models.py ZeroShotHead)
    kind: str = "trained"  # trained | zero_shot
    prompt: str = "a video of {label}"  # zero_shot: the text embedded per label
    label_text: dict[str, str] = dataclasses.field(default_factory=dict)  # zero_shot: label -> what {label} becomes
    negative: str = "a video"  # zero_shot binary: the prompt the label is weighed against
    text_model: str | None = None  # zero_shot: CLIP/SigLIP name or folder; default: the first input's weights
    # key -> values: `train` trains every combination in one pass over the batches and keeps the best on val
    sweep: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    patience: int | None = None  # stop after this many epochs without a better val metric, keeping the best epoch
    # pooled: a video's rows together; each: inputs made from a clips view of several clips are read
    # view by view (segments x crops): one random view per video while training, scores averaged over
    # every view at val, test and predict, as the papers' multi-view evaluations do
    views: str = "pooled"

    @property
    def targets(self) -> tuple[str, ...]:
        return (self.target,) if isinstance(self.target, str) else tuple(self.target)

    @property
    def loss_name(self) -> str:
        return self.loss or KINDS[self.task].losses[0]

    def validate(self, where: str) -> None:
        if self.task not in KINDS:
            raise ConfigError(f"{where}.task: {self.task!r} is not one of {list(KINDS)}")
        if self.kind not in HEAD_KINDS:
            raise ConfigError(f"{where}.kind: {self.kind!r} is not one of {list(HEAD_KINDS)}")
        if self.kind == "zero_shot":
            self._validate_zero_shot(where)
        task = KINDS[self.task]
        if self.loss_name not in task.losses:
            raise ConfigError(f"{where}.loss: {self.task} trains with one of {list(task.losses)}")
        if (task.columns == "several") != (len(self.targets) > 1):
            several = [name for name, kind in KINDS.items() if kind.columns == "several"]
            raise ConfigError(
                f"{where}.target: {' and '.join(several)} takes a list of columns, other tasks one column"
            )
        if not self.inputs:
            raise ConfigError(f"{where}.inputs: name at least one feature store")
        keys = [i.key for i in self.inputs]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"{where}.inputs: names {keys} repeat; give inputs distinct `name`s")
        pooled = {i.key for i in self.inputs if i.pool in ("mean", "max", "attention")}
        for spec in self.inputs:
            if spec.guide and spec.guide not in pooled:
                raise ConfigError(f"{where}.inputs: guide {spec.guide!r} must be a pooled input among {sorted(pooled)}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"{where}: epochs, batch_size and lr must be positive")
        if self.views not in VIEW_MODES:
            raise ConfigError(f"{where}.views: {self.views!r} is not one of {list(VIEW_MODES)}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"{where}.patience: {self.patience} epochs; give a positive number or null")
        if self.sweep:
            for values, point in self.configurations(where):
                point.validate(f"{where} (sweep point {values})")

    def configurations(self, where: str = "heads") -> list[tuple[dict[str, Any], HeadConfig]]:
        """Every combination of the sweep's values, the last key varying fastest, each as (its swept
        values, the config that trains it, with no sweep); without a sweep, ({}, this config)."""
        if not self.sweep:
            return [({}, self)]
        if self.kind == "zero_shot":
            raise ConfigError(f"{where}.sweep: a zero_shot head trains nothing to sweep; remove sweep")
        axes = []
        for key, values in self.sweep.items():
            hint = self._swept_hint(key, f"{where}.sweep")
            if not values:
                raise ConfigError(f"{where}.sweep.{key}: give a list of at least one value")
            axes.append([coerce(value, hint, f"{where}.sweep.{key}[{i}]") for i, value in enumerate(values)])
        points = [dict(zip(self.sweep, point, strict=True)) for point in itertools.product(*axes)]
        return [(values, self.with_values(values)) for values in points]

    def with_values(self, values: dict[str, Any]) -> HeadConfig:
        """This config with some values set (a sweep point's keys), and no sweep."""
        inputs = list(self.inputs)
        for key, value in values.items():
            if "." in key:
                name, option = key.split(".", 1)
                i = [spec.key for spec in inputs].index(name)
                inputs[i] = dataclasses.replace(inputs[i], **{option: value})
        own = {key: value for key, value in values.items() if "." not in key}
        return dataclasses.replace(self, **own, inputs=tuple(inputs), sweep={})

    def _swept_hint(self, key: str, where: str) -> Any:
        """The type a swept key's values take, or an error naming what may be swept."""
        if "." in key:
            name, option = key.split(".", 1)
            names = [spec.key for spec in self.inputs]
            if name not in names:
                raise ConfigError(f"{where}.{key}: no input named {name!r}; the inputs are {names}")
            if option not in SWEPT_INPUT_KEYS:
                raise ConfigError(
                    f"{where}.{key}: an input's {option!r} cannot be swept; sweep one of {list(SWEPT_INPUT_KEYS)}"
                )
            return typing.get_type_hints(InputConfig)[option]
        if key not in SWEPT_HEAD_KEYS:
            raise ConfigError(
                f"{where}.{key}: cannot be swept (one pass shares every batch, so batch_size, seed and the "
                f"inputs' max_len stay fixed); sweep one of {list(SWEPT_HEAD_KEYS)} or '<input>.<option>' "
                f"with option one of {list(SWEPT_INPUT_KEYS)}"
            )
        return typing.get_type_hints(HeadConfig)[key]

    def _validate_zero_shot(self, where: str) -> None:
        if not KINDS[self.task].zero_shot:
            scored = [name for name, kind in KINDS.items() if kind.zero_shot]
            raise ConfigError(f"{where}.task: a zero_shot head scores labels, so its task is one of {scored}")
        if "{label}" not in self.prompt:
            raise ConfigError(f"{where}.prompt: {self.prompt!r} has no {{label}} to put each label's text in")
        for i, spec in enumerate(self.inputs):
            if spec.pool != "mean":
                raise ConfigError(
                    f"{where}.inputs[{i}].pool: a zero_shot head compares mean-pooled rows with the labels; "
                    "set pool: mean"
                )


def head_config(name: str, values: dict[str, Any]) -> HeadConfig:
    """Validated `heads.<name>`; every key is checked, unknown ones named."""
    where = f"params.yaml heads.{name}"
    values = dict(values or {})
    raw_inputs = values.get("inputs") or []
    if not isinstance(raw_inputs, list):
        raise ConfigError(f"{where}.inputs: a list of {{store: ..., pool: ...}}")
    values["inputs"] = tuple(
        build_config(InputConfig, item, f"{where}.inputs[{i}]") for i, item in enumerate(raw_inputs)
    )
    return build_config(HeadConfig, values, where)


def config_to_dict(config: HeadConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(values: dict[str, Any]) -> HeadConfig:
    values = dict(values)
    values["inputs"] = tuple(InputConfig(**{**i, "windows": tuple(i["windows"])}) for i in values["inputs"])
    values["hidden"] = tuple(values["hidden"])
    values.setdefault("kind", "trained")  # checkpoints written before zero_shot heads existed
    values["sweep"] = {key: tuple(v) for key, v in values.get("sweep", {}).items()}
    if isinstance(values["target"], list):
        values["target"] = tuple(values["target"])
    return HeadConfig(**values)
