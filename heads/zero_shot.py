"""The label side of a zero-shot head: each label's prompt embedded by the text tower of the image-text,
video-text or audio-text model (CLIP, SigLIP, VideoPrism, PE, CLAP) that made the head's input
stores, through the text-tower backbone the registry names for it (`clip_text`, `pe_text`, ...).

The model is the configured `text_model`, else the library name recorded in the first input store's
recipe (a local folder must be named: recipes keep no paths). Either way its sha256 must equal the
weights of every input store, since cosines between two different models' spaces mean nothing.
"""

from __future__ import annotations

import torch
from torch.utils.data import default_collate

from extract.backbones import VideoInput, get_backbone
from extract.core.config import ConfigError
from extract.core.recipe import Recipe
from heads.checkpoint import InputSchema
from heads.config import HeadConfig
from heads.kinds import Task


def label_prompts(config: HeadConfig, task: Task) -> list[str]:
    """One text per output: the prompt around each label's text; binary adds the negative prompt last."""
    prompts = [config.prompt.format(label=config.label_text.get(name, name)) for name in task.classes]
    return prompts + [config.negative] if task.kind.negative_prompt else prompts


def made_with(recipe: Recipe) -> str:
    weights = recipe.weights or {}
    return repr(weights["name"]) if weights["name"] else f"from a local folder (sha256 {weights['sha256'][:12]}...)"


def embed_labels(
    config: HeadConfig, task: Task, schemas: dict[str, InputSchema]
) -> tuple[torch.Tensor, float, float | None]:
    """(label embeddings (labels, D), logit scale, logit bias or None) from the inputs' own model."""
    where = "heads zero_shot"
    recipes = {key: schema.recipe for key, schema in schemas.items()}
    towers = {}
    for key, recipe in recipes.items():
        tower = get_backbone((recipe.backbone or {}).get("model", "")).text_tower if recipe.backbone else None
        if tower is None or not isinstance(recipe.weights, dict):
            raise ConfigError(
                f"{where}: input {key!r} was not made by a backbone with a text tower in its space (clip, clap, "
                "videoprism, pe_video and their text towers): a zero-shot head compares its rows with label text "
                "embedded by the same model"
            )
        rows = recipe.backbone.get("rows", "shared")
        if rows != "shared":  # VideoPrism's and PE's frame rows are their encoders', not the text space
            raise ConfigError(
                f"{where}: input {key!r} holds {recipe.backbone['model']} rows: {rows}, which are not in the "
                "space of its text tower: make that store with rows: shared"
            )
        towers[key] = tower
    first, recipe = next(iter(recipes.items()))
    name = config.text_model or recipe.weights["name"]
    if not name:  # recipes keep no paths: a store made from a local folder does not say where it was
        raise ConfigError(
            f"{where}: input {first!r} was made with weights {made_with(recipe)}: set the head's text_model "
            "to that folder"
        )
    entry = get_backbone(towers[first])
    # the precision the rows were made at (a float32 store gets float32 labels on a bfloat16 CPU too)
    precision = (recipe.backbone or {}).get("precision", "auto")
    settings = entry.config_cls(
        model=entry.name, input="label prompts", weights=name, dtype="float32", precision=precision
    )
    backbone = entry.build(settings, torch.device("cpu"))
    for key, recipe in recipes.items():
        if recipe.weights["sha256"] != backbone.weights.sha256:
            raise ConfigError(
                f"{where}: input {key!r} was made with weights {made_with(recipe)} but the labels would "
                f"be embedded with {name!r}, another model: set text_model to the weights that made {key!r}"
            )
    prompts = label_prompts(config, task)
    units = [backbone.units(VideoInput(vid=str(i), text=text)).items[0] for i, text in enumerate(prompts)]
    embeddings = backbone.embed(default_collate(units))
    scale, bias = backbone.logit_scale_bias()
    return embeddings, scale, bias
