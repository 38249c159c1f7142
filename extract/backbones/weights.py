"""One resolver for every backbone's weights.

A library name goes through that library's own download-and-cache mechanism (the torch hub
checkpoints folder, the Hugging Face cache, whisper's download root); a local path is used as
it is. Nothing cached and no network: `WeightsError` names the exact file and where to put it.
There is never a fallback to random weights.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from extract.core.errors import UserError
from extract.core.files import file_sha256


class WeightsError(UserError):
    """Weights that cannot be found, fetched or loaded; the message says which file and where."""


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a backbone's weights are on disk, and what they are."""

    name: str  # as configured: a library name or a path
    source: str  # e.g. "torchvision:ResNet50_Weights.IMAGENET1K_V2", "huggingface:bert-base-uncased", "path"
    files: tuple[Path, ...]  # the files that hold the weights

    @property
    def path(self) -> Path:
        return self.files[0]

    @cached_property
    def sha256(self) -> str:
        """sha256 of the files' contents (one file: its plain sha256); read once (the recipe and the
        ONNX cache both ask for it, and a ResNet50 is 98 MB)."""
        digests = [file_sha256(f) for f in self.files]
        if len(digests) == 1:
            return digests[0]
        return hashlib.sha256("".join(digests).encode()).hexdigest()

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "source": self.source, "sha256": self.sha256}


def is_local_path(name: str, repo_ids: bool = False) -> bool:
    """A weights value naming a file or folder (rather than a library name). With `repo_ids` (Hugging
    Face families) `org/name` with one slash is a repository id unless such a folder exists here."""
    if Path(name).expanduser().exists() or name.startswith((".", "~", os.sep)):
        return True
    return name.count(os.sep) > (1 if repo_ids else 0)


def local_files(name: str, what: str) -> tuple[Path, ...]:
    path = Path(name).expanduser()
    if not path.exists():
        raise WeightsError(f"{what}: weights path {path} does not exist; fix the path in params.yaml")
    return (path,)


def torch_hub_file(url: str, what: str) -> Path:
    """A checkpoint from the torch hub cache, downloaded there by torch if missing."""
    import torch

    target = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(target), hash_prefix=_hash_prefix(target.name), progress=False)
        except Exception as exc:  # any network or hash failure: say what to place where
            raise WeightsError(
                f"{what}: {target.name} is not in the torch hub cache and could not be downloaded ({exc}). "
                f"Put the file from {url} at {target}, or set the backbone's `weights` to a local file"
            ) from None
    return target


def _hash_prefix(filename: str) -> str | None:
    """torchvision and torchvggish name files `<name>-<first hex digits of sha256>.pth`."""
    stem = filename.rsplit(".", 1)[0]
    prefix = stem.rsplit("-", 1)[-1] if "-" in stem else ""
    return prefix if len(prefix) >= 6 and all(c in "0123456789abcdef" for c in prefix) else None


def huggingface_folder(repo_id: str, what: str) -> Path:
    """A model folder from the Hugging Face cache, downloaded there by huggingface_hub if missing."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.model", "*.safetensors"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:
        from huggingface_hub.constants import HF_HUB_CACHE

        raise WeightsError(
            f"{what}: {repo_id} is not in the Hugging Face cache ({HF_HUB_CACHE}) and could not be downloaded "
            f"({type(exc).__name__}). Run `python -m extract weights` where there is internet and copy that "
            "cache here, or set the backbone's `weights` to a local model folder"
        ) from None


def model_files(folder: Path) -> tuple[Path, ...]:
    """The weight files of a Hugging Face model folder (what its sha256 is taken over)."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise WeightsError(f"{folder} holds no *.safetensors or *.bin weights; point `weights` at a model folder")
    return tuple(files)
