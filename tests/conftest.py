"""Shared fixtures: tiny videos made by ffmpeg, and the real media beside the checkout when present."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# `./run.sh test` runs the suite on every core with pytest-xdist (`-n auto`). Each module is one unit
# of work, so that a module-scoped project is built once. The modules that start Ray share one unit:
# `ray stop --force` ends every Ray process on the machine, a neighbour's local cluster included. The
# longest units go first, so that no worker starts one near the end.
RAY_MODULES = {"test_executor", "test_failures", "test_ray", "test_ray_cluster"}
LONGEST_FIRST = ["test_dvc", "test_report", "ray", "test_media", "test_backbones", "test_mutated"]


def _pin_xdist_worker() -> None:
    """Give this xdist worker, and every process it starts, its own share of the cores. Sharing
    them, each worker's torch threads wait for cores the other holds: a head test that takes 4 s
    alone took 77 s beside another worker."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if worker is None or len(cores) < count:
        return
    mine = cores[int(worker.removeprefix("gw")) :: count]
    try:
        os.sched_setaffinity(0, mine)
    except OSError:  # a sandbox that forbids it: the workers share the cores, slower but correct
        return
    os.environ["OMP_NUM_THREADS"] = str(len(mine))  # read when torch is first imported, here and in children


_pin_xdist_worker()


def _unit(nodeid: str) -> str:
    module = Path(nodeid.split("::")[0]).stem
    return "ray" if module in RAY_MODULES else module


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_unit(item.nodeid), len(rank)))  # stable: the rest keep their order


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        """Sends a module's tests to one worker, in collection order (`--no-loadscope-reorder`)."""

        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    return ModuleScheduling(config, log)


def sh(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """A command a user types in a project (`dvc repro`), with this environment's `python` first on PATH
    (and `env`'s variables, where given)."""
    env = {**os.environ, **(env or {}), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def git(cwd: Path, *args: str) -> str:
    return sh(cwd, "git", "-c", "user.name=t", "-c", "user.email=t@t", *args)


def ran(output: str) -> set[str]:
    """The stages a `dvc repro` ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def make_video(
    path: Path,
    seconds: float = 2.0,
    size: str = "64x48",
    rate: int = 25,
    audio: bool = True,
    gop: int = 12,
    codec: str = "libx264",
    extra: tuple[str, ...] = (),
) -> Path:
    """A testsrc2 video (moving, every frame different) with an optional 440 Hz tone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}", "-ac", "2"]
    args += ["-c:v", codec, "-g", str(gop), "-pix_fmt", "yuv420p", *extra]
    if codec == "libx264":
        args += ["-preset", "ultrafast", "-bf", "2"] if "-bf" not in extra else ["-preset", "ultrafast"]
    ffmpeg(*args, "-shortest" if audio else "-an", str(path))
    return path


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s, 25 fps H.264 clip with B-frames, keyframes every 12 frames and stereo audio."""
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture(scope="session")
def shared_media() -> Path:
    media = SHARED / "media"
    if not media.is_dir():
        pytest.skip("../shared/media is absent")
    return media


# Backbone weights: the real architectures with random weights, saved where the production loaders read them.
@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="session", autouse=True)
def torch_home(tmp_path_factory) -> Path:
    """The torch hub folder the tests' processes use (the ONNX models exported there included), in
    the session's temp folder instead of the user's cache; a test may point it elsewhere."""
    folder = tmp_path_factory.mktemp("torch_home")
    os.environ["TORCH_HOME"] = str(folder)
    return folder


def save_torchvision(weights_dir: Path, name: str) -> Path:
    import torch
    import torchvision

    path = weights_dir / f"{name}.pth"
    if not path.exists():
        torch.save(torchvision.models.get_model(name, weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def whisper_file(weights_dir) -> Path:
    """A whisper checkpoint with tiny random layers (its real vocabulary and mel size)."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=32,
        n_audio_head=2,
        n_audio_layer=1,
        n_vocab=51864,
        n_text_ctx=448,
        n_text_state=32,
        n_text_head=2,
        n_text_layer=1,
    )
    path = weights_dir / "tiny-whisper.pt"
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": Whisper(dims).state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def vggish_folder(weights_dir) -> Path:
    """A VGGish weights folder: random VGG weights and random PCA parameters, in the released files' formats."""
    import numpy as np
    import torch
    import torchvggish

    folder = weights_dir / "vggish"
    folder.mkdir()
    torch.save(
        torchvggish.VGG(torchvggish.make_layers(), postprocess=False).state_dict(), folder / "vggish-10086976.pth"
    )
    rng = np.random.default_rng(0)
    pca = {"pca_eigen_vectors": rng.normal(0, 0.1, (128, 128)), "pca_means": rng.normal(0, 1, (128, 1))}
    torch.save(pca, folder / "vggish_pca_params-970ea276.pth")  # numpy arrays, like the released file
    return folder


@pytest.fixture(scope="session")
def bert_folder(weights_dir) -> Path:
    """A 2-layer BERT with random weights and a 15-word vocabulary, as a Hugging Face folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = weights_dir / "tiny-bert"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"the a cold beer yoga by sea run river party".split()]
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def rows_by_id(store) -> dict:
    """Every video's (rows, timestamps) of a store, by id: what two stores made the same way share,
    whatever order their shards hold the videos in."""
    return {vid: store.get(vid) for vid in store.ids}


def assert_same_rows(store, other, rtol: float = 0.0, atol: float = 0.0) -> None:
    assert store.ids == other.ids and store.failures == other.failures
    for vid, (rows, times) in rows_by_id(store).items():
        theirs, their_times = other.get(vid)
        np.testing.assert_allclose(rows, theirs, rtol=rtol, atol=atol, err_msg=vid)
        np.testing.assert_array_equal(times, their_times)


def save_tiny_clip(folder: Path) -> Path:
    """A tiny random CLIP saved with its processor; the tokenizer is CLIP's byte-level vocabulary (the
    256 byte symbols and their `</w>` forms plus the two special tokens) with no merges."""
    import json

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True)
    # the byte-to-symbol table of byte-level BPE (GPT-2, CLIP): printable bytes stand for themselves
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}
    symbols = [table[b] for b in range(256)]
    vocab = {token: i for i, token in enumerate(symbols + [s + "</w>" for s in symbols])}
    start, end = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": start, "<|endoftext|>": end})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    text |= {"num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": start, "eos_token_id": end}
    text |= {"pad_token_id": end}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    vision |= {"image_size": 32, "patch_size": 8}
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def clap_folder(weights_dir) -> Path:
    """A tiny CLAP (the real classes, random weights): HTSAT with one layer a stage, a one-layer RoBERTa,
    and RoBERTa's byte-level vocabulary (the 256 byte symbols, no merges)."""
    import json

    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, RobertaTokenizer

    folder = weights_dir / "tiny-clap"
    folder.mkdir(parents=True)
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {token: i for i, token in enumerate(specials + [table[b] for b in range(256)])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    text = {"vocab_size": len(vocab), "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    text |= {"intermediate_size": 37, "max_position_embeddings": 80, "pad_token_id": 1, "bos_token_id": 0}
    text |= {"eos_token_id": 2, "projection_dim": 16}
    audio = {"depths": [1, 1, 1, 1], "num_attention_heads": [1, 1, 1, 1], "patch_embeds_hidden_size": 8}
    audio |= {"hidden_size": 64, "projection_dim": 16, "enable_fusion": False}
    torch.manual_seed(0)
    ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=16)).save_pretrained(folder)
    ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def clip_folder(weights_dir) -> Path:
    return save_tiny_clip(weights_dir / "tiny-clip")


def save_char_tokenizer(folder: Path, specials: list[str]) -> Path:
    """A tokenizer of single lowercase letters and spaces-dropped words, the real `PreTrainedTokenizerFast`
    (what AutoTokenizer loads from the folder); specials come first, `[CLS]` (if given) starts every text."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(specials + [chr(c) for c in range(ord("a"), ord("z") + 1)])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split("", "isolated")]
    )
    if "[CLS]" in vocab:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
    named = {"pad_token": "<pad>", "unk_token": "<unk>"} | (
        {"cls_token": "[CLS]", "sep_token": "[SEP]"} if "[CLS]" in vocab else {}
    )
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, **named).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def videoprism_folder(weights_dir) -> Path:
    """A tiny VideoPrism video-text (LVT) model, the real class with random weights: 4-frame clips at
    36 px in 18 px patches, one layer per stage, and a letter tokenizer."""
    import torch
    from transformers import VideoPrismClipModel, VideoPrismConfig

    folder = weights_dir / "tiny-videoprism-lvt"
    vision = {"image_size": 36, "num_frames": 4, "hidden_size": 32, "num_attention_heads": 2}
    vision |= {"intermediate_size": 37, "num_spatial_layers": 1, "num_temporal_layers": 1, "num_auxiliary_layers": 1}
    text = {"vocab_size": 28, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1}
    text |= {"num_attention_heads": 2, "max_position_embeddings": 16}
    torch.manual_seed(0)
    VideoPrismClipModel(VideoPrismConfig(vision_config=vision, text_config=text)).save_pretrained(folder)
    return save_char_tokenizer(folder, ["<pad>", "<unk>"])


def tiny_pe_av():
    """A tiny Perception Encoder audio-video model (the real classes, seeded random weights: a one-block
    PE Core ViT through timm at 32 px, one-layer encoders, a one-layer ModernBERT). transformers 5.23
    cannot load its own saved PeAudioVideoModel (tied weights), so tests rebuild this one to compare."""
    import torch
    from transformers import PeAudioVideoConfig, PeAudioVideoModel

    layers = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 2}
    layers |= {"head_dim": 16}
    vit = {"img_size": 32, "embed_dim": 32, "depth": 1, "num_heads": 2}
    vision = {"architecture": "vit_pe_core_tiny_patch16_384", "num_classes": 16, "model_args": vit}
    audio_video = {**layers, "audio_config": layers, "video_config": {**layers, "vision_config": vision}}
    text = {"vocab_size": 30, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1}
    text |= {"num_attention_heads": 2, "pad_token_id": 0, "cls_token_id": 2, "sep_token_id": 3}
    text |= {"bos_token_id": 2, "eos_token_id": 3}
    torch.manual_seed(0)
    model = PeAudioVideoModel(PeAudioVideoConfig(text_config=text, audio_video_config=audio_video)).eval()
    with torch.no_grad():  # trained values, not the zeros it starts from (a zero scale ties every label)
        model.video_model.text_video_logit_scale.fill_(10.0)
        model.video_model.text_video_logit_bias.fill_(-2.0)
    return model


@pytest.fixture(scope="session")
def pe_av_folder(weights_dir) -> Path:
    """`tiny_pe_av` saved as Meta publishes PE video, with its video processor and a letter tokenizer."""
    from transformers import PeVideoVideoProcessor

    folder = weights_dir / "tiny-pe-av"
    tiny_pe_av().save_pretrained(folder)
    steps = {"size": {"height": 32, "width": 32}, "do_resize": True, "do_rescale": True, "do_normalize": True}
    PeVideoVideoProcessor(**steps, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return save_char_tokenizer(folder, ["<pad>", "<unk>", "[CLS]", "[SEP]"])


def write_input(path: Path, kind: str, videos: dict[str, np.ndarray], times=None, config=None) -> Path:
    """A decoded store with the given rows per video, as `decode` writes them."""
    from extract.store import StoreWriter

    first = next(iter(videos.values()))
    attrs = {"kind": kind, "config": json.dumps(config or {"view": {"type": kind, "sample_rate": 16000}})}
    with StoreWriter(path, row_shape=first.shape[1:], dtype=first.dtype, attrs=attrs) as writer:
        for vid, rows in videos.items():
            stamps = np.arange(len(rows), dtype=np.float32) if times is None else times[vid]
            writer.add(vid, rows, stamps, source_sha256=f"sha-{vid}")
    return path


# Synthetic feature stores for head tests: N videos of CLASSES classes, rows DIM wide.
N, DIM, CLASSES = 240, 16, 3


def write_store(
    path: Path,
    rows: dict[str, np.ndarray],
    backbone: str = "synthetic",
    sha: str = "w",
    frames: int = 4,
    view: dict | None = None,
) -> str:
    """A feature store as `extract features` writes one, recipe included; made from `view` (default: a
    frames view of `frames` frames)."""
    from extract.core.recipe import contract_json
    from extract.store import StoreWriter

    recipe = {
        "backbone": {"model": backbone, "dtype": "float32"},
        "weights": {"name": backbone, "source": "test", "sha256": sha},
        "preprocessing": {},
        "input": {"view": view or {"type": "frames", "num_frames": frames}},
    }
    attrs = {"kind": "features", "backbone": backbone, "recipe": json.dumps(recipe), "config": contract_json(recipe)}
    with StoreWriter(path, row_shape=(DIM,), dtype=np.float32, attrs=attrs) as writer:
        for vid, feats in rows.items():
            writer.add(vid, feats, np.arange(len(feats), dtype=np.float32), "s")
    return str(path)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict:
    """N videos whose class shows in every input: a class direction plus noise, sequences of 3-12 rows."""
    root = tmp_path_factory.mktemp("heads")
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (CLASSES, DIM)) * 2
    label = rng.integers(0, CLASSES, N)
    seq, pooled, tokens = {}, {}, {}
    for i in range(N):
        vid = f"v{i:03d}"
        length = int(rng.integers(3, 13))
        seq[vid] = (centres[label[i]] + rng.normal(0, 1, (length, DIM))).astype(np.float32)
        pooled[vid] = (centres[label[i]] + rng.normal(0, 1, (1, DIM))).astype(np.float32)
        tokens[vid] = centres[label[i]][None] * (rng.random((length, 1)) > 0.5) + rng.normal(0, 0.5, (length, DIM))
        tokens[vid] = tokens[vid].astype(np.float32)
    stores = {
        "seq": write_store(root / "seq", seq),
        "pooled": write_store(root / "pooled", pooled),
        "tokens": write_store(root / "tokens", tokens),
    }
    value = label * 2.0 + rng.normal(0, 0.1, N)
    split = np.array(["train"] * 160 + ["val"] * 40 + ["test"] * 40)
    names = ["red", "green", "blue"]
    rows = [
        {
            "id": f"v{i:03d}",
            "split": split[i],
            "binary": str(int(label[i] == 0)),
            "tags": ",".join(sorted({names[label[i]], *(["green"] if label[i] == 2 else [])})),
            "action": names[label[i]],
            "value": f"{value[i]:.4f}",
            "other": f"{-value[i] * 3 + 1:.4f}",
        }
        for i in range(N)
    ]
    return {"root": root, "stores": stores, "rows": rows}


def write_manifest(path: Path, rows: list[dict]) -> str:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def config_for(synthetic: dict, tmp: Path, task: str, target, inputs: list[dict], rows=None, **extra):
    """A head's config over the synthetic stores, small enough to train in about a second."""
    from heads.config import head_config

    manifest = write_manifest(tmp / "manifest.csv", rows or synthetic["rows"])
    values = {
        "task": task,
        "target": target,
        "inputs": inputs,
        "manifest": manifest,
        "epochs": 25,
        "batch_size": 16,
        "lr": 3e-3,
        "hidden": [32],
        "dropout": 0.0,
        "bootstrap": 0,
        **extra,
    }
    return head_config("h", values)


def resolve(inputs: list[dict], stores: dict) -> list[dict]:
    """Inputs naming a synthetic store by key, with its folder instead."""
    return [{**spec, "store": stores[spec["store"]]} for spec in inputs]
