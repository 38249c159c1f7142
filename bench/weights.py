"""Random-weight backbone files for the benchmarks, in the formats the production loaders read.

Speed does not depend on the weight values; loading them through `extract.backbones` keeps the
measured path the one users run. torch is imported inside each helper, so importing this module
costs nothing in processes whose peak memory is measured.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np


def torchvision_file(folder: Path, name: str) -> Path:
    """A torchvision classifier's state dict, as its hub checkpoint holds it."""
    import torch
    import torchvision

    path = folder / f"{name}.pth"
    if not path.exists():
        torch.save(torchvision.models.get_model(name, weights=None).state_dict(), path)
    return path


def bert_base_folder(folder: Path) -> Path:
    """bert-base-uncased's shape (12 layers, 768 wide, 30,522-token vocab) in a save_pretrained folder.

    The vocab is placeholders, so every word of a benchmark text is one [UNK] token: texts of N words
    give N tokens, which is what the cost depends on."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = folder / "bert-base"
    if path.exists():
        return path
    path.mkdir(parents=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = specials + [f"[unused{i}]" for i in range(BertConfig().vocab_size - len(specials))]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    BertModel(BertConfig()).save_pretrained(path)
    return path


def vggish_folder(folder: Path) -> Path:
    """The VGGish network and AudioSet PCA files under the names torchvggish downloads."""
    import torch
    import torchvggish

    path = folder / "vggish"
    if path.exists():
        return path
    path.mkdir(parents=True)
    model = torchvggish.VGG(torchvggish.make_layers(), postprocess=False)
    torch.save(model.state_dict(), path / "vggish-10086976.pth")
    rng = np.random.default_rng(0)
    pca = {"pca_eigen_vectors": rng.normal(0, 0.1, (128, 128)), "pca_means": rng.normal(0, 1, (128, 1))}
    torch.save(pca, path / "vggish_pca_params-970ea276.pth")
    return path


def whisper_base_file(folder: Path) -> Path:
    """A checkpoint with Whisper base's dimensions, in openai-whisper's file format."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    path = folder / "whisper-base.pt"
    if path.exists():
        return path
    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=512,
        n_audio_head=8,
        n_audio_layer=6,
        n_vocab=51865,
        n_text_ctx=448,
        n_text_state=512,
        n_text_head=8,
        n_text_layer=6,
    )
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": Whisper(dims).state_dict()}, path)
    return path


def clip_vit_b32_folder(folder: Path) -> Path:
    """CLIP ViT-B/32's shape (transformers' CLIPConfig defaults) and image processor, in a save_pretrained folder."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    path = folder / "clip-vit-b32"
    if path.exists():
        return path
    partial = folder / "clip-vit-b32.partial"
    shutil.rmtree(partial, ignore_errors=True)
    CLIPModel(CLIPConfig()).save_pretrained(partial)
    CLIPImageProcessor(crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224}).save_pretrained(partial)
    partial.rename(path)
    return path
