"""Backbones through the production loaders, with random weights saved by fixtures, against direct
calls of the reference libraries on the same input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED, assert_same_rows, make_video, save_torchvision, tiny_pe_av, write_input

from extract.backbones import READS, BackboneConfig, get_backbone, input_kind, list_backbones
from extract.backbones.pixels import TensorImageProcessor
from extract.backbones.weights import WeightsError
from extract.core.config import ConfigError
from extract.stages.features import run_features
from extract.store import StoreReader, StoreWriter

torch.manual_seed(0)


def frames(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def reference_torchvision(name: str, weights: Path) -> torch.nn.Module:
    """The torchvision model with its classifier replaced by identity, as the issue defines it."""
    import torchvision

    model = torchvision.models.get_model(name, weights=None)
    model.load_state_dict(torch.load(weights, weights_only=True))
    if name == "s3d":
        model.classifier = torch.nn.Identity()
    elif hasattr(model, "fc"):
        model.fc = torch.nn.Identity()
    else:
        model.head = torch.nn.Identity()
    return model.eval()


def test_image_classifier_rows_equal_torchvision_on_its_transforms(tmp_path, weights_dir):
    weights = save_torchvision(weights_dir, "resnet18")
    source = write_input(tmp_path / "frames", "frames", {"a": frames(3), "b": frames(5, seed=1)})
    config = {
        "model": "resnet18",
        "input": str(source),
        "weights": str(weights),
        "dtype": "float32",
        "precision": "float32",
    }
    summary = run_features("r18", config, tmp_path / "r18", batch_size=4, loader_workers=0)
    assert summary.computed == 2
    store = StoreReader(tmp_path / "r18")
    from torchvision.models import ResNet18_Weights

    model, transforms = reference_torchvision("resnet18", weights), ResNet18_Weights.DEFAULT.transforms()
    for vid, seed, n in [("a", 0, 3), ("b", 1, 5)]:
        with torch.inference_mode():
            expected = model(transforms(torch.from_numpy(frames(n, seed=seed)).permute(0, 3, 1, 2))).numpy()
        rows, times = store.get(vid)
        assert rows.shape == (n, 512)
        np.testing.assert_allclose(rows, expected, rtol=1e-4, atol=1e-4)
        assert times.tolist() == list(range(n))
    attrs = store.attrs
    assert attrs["runtime"].startswith("onnxruntime ") and attrs["precision"] == "float32"  # float32 on the CPU
    recipe = json.loads(attrs["recipe"])
    assert recipe["weights"]["source"] == "path" and recipe["weights"]["name"] is None  # no local path recorded
    # the typed recipe reads back what was written, and gives back the store's reuse key
    assert store.recipe.to_dict() == recipe and store.recipe.key == attrs["config"]
    assert store.recipe.input.view["type"] == "frames" and store.recipe.backbone["model"] == "resnet18"
    assert "resize_size=[256]" in recipe["preprocessing"]["transforms"]


def test_the_exported_model_is_made_once_and_made_again_when_damaged(tmp_path, weights_dir, monkeypatch):
    from extract.backbones.onnx_runtime import onnx_cache
    from extract.core.files import file_sha256

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache of its own

    source = write_input(tmp_path / "frames", "frames", {"a": frames(2)})
    config = {"model": "resnet18", "input": str(source), "weights": str(save_torchvision(weights_dir, "resnet18"))}
    config |= {"dtype": "float32", "precision": "float32"}
    run_features("r18", config, tmp_path / "first", loader_workers=0)
    exported = sorted(onnx_cache().glob("resnet18-*-float32-*.onnx"))
    assert len(exported) == 1 and not list(onnx_cache().glob(".*.tmp"))
    stamp = exported[0].stat().st_mtime_ns
    run_features("r18", config, tmp_path / "again", loader_workers=0)
    assert exported[0].stat().st_mtime_ns == stamp  # loaded, not exported again
    with open(exported[0], "r+b") as handle:  # a flipped byte in the middle of the weights
        handle.seek(exported[0].stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    run_features("r18", config, tmp_path / "mended", loader_workers=0)
    remade = sorted(onnx_cache().glob("resnet18-*-float32-*.onnx"))
    assert len(remade) == 1 and remade[0].stat().st_mtime_ns != stamp
    assert file_sha256(remade[0]).startswith(remade[0].stem.rsplit("-", 1)[1])  # its name says its bytes
    assert_same_rows(StoreReader(tmp_path / "first"), StoreReader(tmp_path / "mended"))


def test_a_cache_that_cannot_be_written_costs_an_export_per_run_not_the_run(tmp_path, weights_dir, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TORCH_HOME", str(blocker / "torch"))  # the hub folder cannot be made
    source = write_input(tmp_path / "frames", "frames", {"a": frames(2)})
    config = {"model": "resnet18", "input": str(source), "weights": str(save_torchvision(weights_dir, "resnet18"))}
    summary = run_features("r18", {**config, "precision": "float32"}, tmp_path / "f", loader_workers=0)
    assert summary.computed == 1 and StoreReader(tmp_path / "f").attrs["runtime"].startswith("onnxruntime ")
    assert blocker.read_text() == "not a folder"


def test_a_classifier_that_cannot_be_exported_runs_eagerly_and_int8_says_why_not(tmp_path, weights_dir, monkeypatch):
    def unsupported(*args, **kwargs):
        raise RuntimeError("an operator the exporter does not know")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("torch.onnx.export", unsupported)  # as torch refuses a model it cannot export
    source = write_input(tmp_path / "frames", "frames", {"a": frames(2)})
    config = {"model": "resnet18", "input": str(source), "weights": str(save_torchvision(weights_dir, "resnet18"))}
    run_features("r18", {**config, "precision": "float32"}, tmp_path / "f", loader_workers=0)
    assert StoreReader(tmp_path / "f").attrs["runtime"].startswith("torch ")
    with pytest.raises(ConfigError, match="precision int8 needs an ONNX export, which failed: an operator"):
        run_features("r18", {**config, "precision": "int8"}, tmp_path / "q", loader_workers=0)


def test_int8_rows_stay_near_float32_and_the_store_says_how_near(tmp_path, weights_dir):
    source = write_input(tmp_path / "frames", "frames", {"a": frames(3), "b": frames(4, seed=1)})
    config = {"model": "resnet18", "input": str(source), "weights": str(save_torchvision(weights_dir, "resnet18"))}
    stores = {}
    for precision in ("float32", "int8"):
        run_features(
            "r18", {**config, "dtype": "float32", "precision": precision}, tmp_path / precision, loader_workers=0
        )
        stores[precision] = StoreReader(tmp_path / precision)
    attrs = stores["int8"].attrs
    assert attrs["precision"] == "int8" and attrs["runtime"].startswith("onnxruntime ")
    assert 0.99 <= attrs["int8_min_cosine"] < 1.0
    for vid in ("a", "b"):
        full, quantized = stores["float32"].get(vid)[0], stores["int8"].get(vid)[0]
        cosine = (full * quantized).sum(1) / (np.linalg.norm(full, axis=1) * np.linalg.norm(quantized, axis=1))
        assert cosine.min() >= 0.99 and not np.array_equal(full, quantized)
    assert stores["int8"].recipe.key != stores["float32"].recipe.key  # int8 rows are not float32 rows


def test_int8_is_refused_where_it_does_not_run(tmp_path, weights_dir):
    source = write_input(tmp_path / "clips", "clips", {"v": np.zeros((1, 8, 64, 64, 3), np.uint8)})
    config = {"model": "mc3_18", "input": str(source), "weights": str(save_torchvision(weights_dir, "mc3_18"))}
    with pytest.raises(ConfigError, match="precision int8 runs torchvision image classifiers on the CPU only"):
        run_features("mc3", {**config, "precision": "int8"}, tmp_path / "f", loader_workers=0)


@pytest.mark.parametrize("name", ["mc3_18", "s3d"])
def test_video_model_rows_equal_torchvision_on_its_transforms(tmp_path, weights_dir, name):
    weights = save_torchvision(weights_dir, name)
    size, length = (64, 8) if name == "mc3_18" else (224, 14)
    clips = frames(2 * length, size).reshape(2, length, size, size, 3)
    source = write_input(tmp_path / "clips", "clips", {"v": clips}, times={"v": np.array([1.0, 3.0], np.float32)})
    config = {"model": name, "input": str(source), "weights": str(weights), "dtype": "float32", "precision": "float32"}
    run_features(name, config, tmp_path / "f", loader_workers=0)
    from torchvision.models import get_model_weights

    transforms = get_model_weights(name).DEFAULT.transforms()
    batch = torch.stack([transforms(torch.from_numpy(c).permute(0, 3, 1, 2)) for c in clips])
    with torch.inference_mode():
        expected = reference_torchvision(name, weights)(batch).numpy()
    rows, times = StoreReader(tmp_path / "f").get("v")
    np.testing.assert_allclose(rows, expected, rtol=1e-3, atol=1e-4)
    assert times.tolist() == [1.0, 3.0]


def test_mvit_refuses_clips_of_the_wrong_length(tmp_path, weights_dir):
    source = write_input(tmp_path / "clips", "clips", {"v": frames(8, 32).reshape(1, 8, 32, 32, 3)})
    config = {"model": "mvit_v2_s", "input": str(source), "weights": str(save_torchvision(weights_dir, "mvit_v2_s"))}
    with pytest.raises(ConfigError, match="mvit_v2_s needs exactly 16 frames per clip but .* has 8: set clip_len: 16"):
        run_features("mvit_v2_s", config, tmp_path / "f", loader_workers=0)


def write_manifest(path: Path, texts: dict[str, str]) -> Path:
    lines = ["id,video,split,sha256,text"] + [f'{vid},{vid}.mp4,train,,"{text}"' for vid, text in texts.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("pooling", ["cls", "pooler", "mean"])
def test_bert_pooled_rows_equal_transformers_on_the_tokenizer_output(tmp_path, bert_folder, pooling):
    from transformers import AutoModel, AutoTokenizer

    texts = {"a": "cold beer by the sea", "b": "yoga", "c": ""}
    manifest = write_manifest(tmp_path / "m.csv", texts)
    config = {
        "model": "bert",
        "input": str(manifest),
        "weights": str(bert_folder),
        "pooling": pooling,
        "max_tokens": 6,
        "dtype": "float32",
        "precision": "float32",
    }
    run_features("bert", config, tmp_path / "bert", loader_workers=0)
    store = StoreReader(tmp_path / "bert")
    tokenizer, model = AutoTokenizer.from_pretrained(bert_folder), AutoModel.from_pretrained(bert_folder).eval()
    for vid, text in texts.items():
        encoded = tokenizer(text, truncation=True, max_length=6, return_tensors="pt")
        with torch.inference_mode():
            out = model(**encoded)
        expected = {
            "cls": out.last_hidden_state[0, 0],
            "pooler": out.pooler_output[0],
            "mean": out.last_hidden_state[0].mean(0),
        }[pooling]
        np.testing.assert_allclose(store.get(vid)[0][0], expected.numpy(), rtol=1e-4, atol=1e-5)


def test_bert_token_rows_are_the_unpadded_tokens(tmp_path, bert_folder):
    from transformers import AutoModel, AutoTokenizer

    manifest = write_manifest(tmp_path / "m.csv", {"a": "cold beer by the sea", "b": "yoga"})
    config = {
        "model": "bert",
        "input": str(manifest),
        "weights": str(bert_folder),
        "output": "tokens",
        "max_tokens": 5,
        "dtype": "float32",
        "precision": "float32",
    }
    run_features("bert", config, tmp_path / "tok", loader_workers=0)
    store = StoreReader(tmp_path / "tok")
    tokenizer, model = AutoTokenizer.from_pretrained(bert_folder), AutoModel.from_pretrained(bert_folder).eval()
    with torch.inference_mode():
        expected = model(**tokenizer("yoga", return_tensors="pt")).last_hidden_state[0].numpy()
    assert store.get("a")[0].shape == (5, 32)  # truncated to max_tokens
    np.testing.assert_allclose(store.get("b")[0], expected, rtol=1e-4, atol=1e-5)  # [CLS] yoga [SEP], no padding


@pytest.fixture(scope="session")
def videomae_folder(weights_dir) -> Path:
    from transformers import VideoMAEConfig, VideoMAEImageProcessor, VideoMAEModel

    folder = weights_dir / "tiny-videomae"
    config = VideoMAEConfig(
        image_size=32,
        patch_size=16,
        num_frames=4,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        use_mean_pooling=True,
    )
    VideoMAEModel(config).save_pretrained(folder)
    VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_videomae_rows_are_the_mean_pooled_encoder_output(tmp_path, videomae_folder):
    from transformers import VideoMAEImageProcessor, VideoMAEModel

    clips = frames(8, 48).reshape(2, 4, 48, 48, 3)
    source = write_input(tmp_path / "clips", "clips", {"v": clips})
    config = {"input": str(source), "weights": str(videomae_folder), "dtype": "float32", "precision": "float32"}
    run_features("videomae", config, tmp_path / "f", loader_workers=0)
    processor = VideoMAEImageProcessor.from_pretrained(videomae_folder)
    model = VideoMAEModel.from_pretrained(videomae_folder).eval()
    pixels = torch.cat([processor(list(c), return_tensors="pt")["pixel_values"] for c in clips])  # PIL, per image
    ours = torch.stack(
        [TensorImageProcessor(processor.to_dict())(torch.from_numpy(c).permute(0, 3, 1, 2)) for c in clips]
    )
    assert ours.shape == pixels.shape and (ours - pixels).abs().mean() < 0.02  # resize kernels differ in the last bits
    with torch.inference_mode():
        expected = model(pixel_values=ours).last_hidden_state.mean(1).numpy()
        from_pil = model(pixel_values=pixels).last_hidden_state.mean(1).numpy()
    rows = StoreReader(tmp_path / "f").get("v")[0]
    np.testing.assert_allclose(rows, expected, rtol=1e-4, atol=1e-5)
    assert ((rows * from_pil).sum(1) / np.linalg.norm(rows, axis=1) / np.linalg.norm(from_pil, axis=1)).min() > 0.99


def clips_input(tmp_path: Path, size: int) -> tuple[np.ndarray, Path]:
    """Two 4-frame clips of one video at 8 fps, centred at 1 s and 3 s."""
    clips = frames(8, size).reshape(2, 4, size, size, 3)
    view = {"view": {"type": "clips", "clip_len": 4, "fps": 8.0}}
    times = {"v": np.array([1.0, 3.0], np.float32)}
    return clips, write_input(tmp_path / "clips", "clips", {"v": clips}, times, view)


def default_and_token_rows(tmp_path: Path, family: str, folder: Path) -> tuple[StoreReader, StoreReader]:
    """A family's stores over `clips_input`, float32: its default rows, and `rows: tokens`."""
    _, source = clips_input(tmp_path, 48)
    config = {"input": str(source), "weights": str(folder), "dtype": "float32", "precision": "float32"}
    run_features(family, config, tmp_path / "default", loader_workers=0)
    run_features(family, {**config, "rows": "tokens"}, tmp_path / "tokens", loader_workers=0)
    return StoreReader(tmp_path / "default"), StoreReader(tmp_path / "tokens")


# a 4-frame clip at 8 fps: its frames sit 0.1875 and 0.0625 s either side of the clip's centre
FRAME_TIMES = [0.8125, 0.9375, 1.0625, 1.1875, 2.8125, 2.9375, 3.0625, 3.1875]


def test_videomae_token_rows_are_every_patch_and_average_to_the_clip_rows(tmp_path, videomae_folder):
    clip, tokens = default_and_token_rows(tmp_path, "videomae", videomae_folder)
    rows, stamps = tokens.get("v")
    assert rows.shape == (16, 32) and tokens.text("token_grid") == ["2x2x2x2"]  # 2 clips x 2 steps x 2 x 2
    np.testing.assert_allclose(rows.reshape(2, 8, 32).mean(1), clip.get("v")[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stamps, np.repeat([0.875, 1.125, 2.875, 3.125], 4), atol=1e-6)
    # the clip rows' recipe is the one stores had before token rows existed
    assert "rows" not in clip.recipe.backbone and "token_pool" not in clip.recipe.backbone
    assert tokens.recipe.backbone["rows"] == "tokens"


@pytest.fixture(scope="session")
def vjepa2_folder(weights_dir) -> Path:
    """A tiny V-JEPA 2 (the real classes, random weights): 4-frame clips at 32 px, tubelets of 2."""
    from transformers import VJEPA2Config as TransformersVJEPA2Config
    from transformers import VJEPA2Model, VJEPA2VideoProcessor

    folder = weights_dir / "tiny-vjepa2"
    config = TransformersVJEPA2Config(
        crop_size=32,
        frames_per_clip=4,
        tubelet_size=2,
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        pred_hidden_size=32,
        pred_num_hidden_layers=1,
        pred_num_attention_heads=2,
    )
    torch.manual_seed(0)
    VJEPA2Model(config).save_pretrained(folder)
    VJEPA2VideoProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("rows", ["tubelet", "clip"])
def test_vjepa2_rows_are_its_encoder_tokens_averaged_over_space(tmp_path, vjepa2_folder, rows):
    from transformers import VJEPA2Model, VJEPA2VideoProcessor

    clips, source = clips_input(tmp_path, 48)
    config = {"input": str(source), "weights": str(vjepa2_folder), "dtype": "float32", "precision": "float32"}
    run_features("vjepa2", {**config, "rows": rows}, tmp_path / "f", loader_workers=0)
    processor = VJEPA2VideoProcessor.from_pretrained(vjepa2_folder)
    model = VJEPA2Model.from_pretrained(vjepa2_folder).eval()
    theirs = processor([c for c in clips], return_tensors="pt")["pixel_values_videos"]  # the processor's own path
    ours = torch.stack(
        [TensorImageProcessor(processor.to_dict())(torch.from_numpy(c).permute(0, 3, 1, 2)) for c in clips]
    )
    assert ours.shape == theirs.shape == (2, 4, 3, 32, 32) and (ours - theirs).abs().mean() < 0.02
    with torch.inference_mode():
        tokens = model(pixel_values_videos=ours, skip_predictor=True).last_hidden_state  # (2, 2 steps x 4 patches, 32)
    got, stamps = StoreReader(tmp_path / "f").get("v")
    if rows == "clip":
        np.testing.assert_allclose(got, tokens.mean(1).numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stamps, [1.0, 3.0])
    else:
        expected = tokens.reshape(2, 2, 4, 32).mean(2).reshape(4, 32)  # clip 1's two steps, then clip 2's
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)
        # at 8 fps a 4-frame clip lasts 0.5 s: its two tubelets are centred 0.125 s before and after its centre
        np.testing.assert_allclose(stamps, [0.875, 1.125, 2.875, 3.125], atol=1e-6)
    assert np.isfinite(got).all()


def test_vjepa2_token_rows_are_every_patch_with_its_place_pooled_and_from_chosen_blocks(tmp_path, vjepa2_folder):
    from transformers import VJEPA2Model, VJEPA2VideoProcessor

    clips, source = clips_input(tmp_path, 48)
    config = {"input": str(source), "weights": str(vjepa2_folder), "dtype": "float32", "precision": "float32"}
    stores = {
        "tokens": {"rows": "tokens"},
        "pooled": {"rows": "tokens", "token_pool": 2},
        "blocks": {"rows": "tokens", "layers": [1, 2]},
        "tubelet": {"rows": "tubelet"},
    }
    for name, extra in stores.items():
        run_features("vjepa2", {**config, **extra}, tmp_path / name, loader_workers=0)
    processor = VJEPA2VideoProcessor.from_pretrained(vjepa2_folder)
    model = VJEPA2Model.from_pretrained(vjepa2_folder).eval()
    pixels = torch.stack(
        [TensorImageProcessor(processor.to_dict())(torch.from_numpy(c).permute(0, 3, 1, 2)) for c in clips]
    )
    with torch.inference_mode():
        out = model(pixel_values_videos=pixels, skip_predictor=True, output_hidden_states=True)
    tokens = out.last_hidden_state  # (2 clips, 2 steps x 2 x 2 patches, 32)

    reader = StoreReader(tmp_path / "tokens")
    got, stamps = reader.get("v")
    np.testing.assert_allclose(got, tokens.reshape(16, 32).numpy(), rtol=1e-4, atol=1e-5)
    # each step's 4 patches share its tubelet's time: 0.125 s before and after each clip's centre
    np.testing.assert_allclose(stamps, np.repeat([0.875, 1.125, 2.875, 3.125], 4), atol=1e-6)
    assert reader.text("token_grid") == ["2x2x2x2"]  # clips x steps x height x width
    assert reader.recipe.preprocessing["rows"] == "tokens"
    assert "token_pool" not in reader.recipe.backbone and "layers" not in reader.recipe.backbone  # defaults: as before

    # 2 x 2 patches pooled over the whole 2 x 2 grid: one row per step, the tubelet rows
    np.testing.assert_allclose(
        StoreReader(tmp_path / "pooled").get("v")[0],
        StoreReader(tmp_path / "tubelet").get("v")[0],
        rtol=1e-5,
        atol=1e-6,
    )
    assert StoreReader(tmp_path / "pooled").text("token_grid") == ["2x2x1x1"]

    # two blocks side by side, each through the final norm: the last block's half is the output
    blocks = StoreReader(tmp_path / "blocks").get("v")[0]
    assert blocks.shape == (16, 64)
    np.testing.assert_allclose(blocks[:, 32:], got, rtol=1e-4, atol=1e-5)
    with torch.inference_mode():
        first = model.encoder.layernorm(model.encoder.layer[0](model.encoder.embeddings(pixels), None)[0])
    np.testing.assert_allclose(blocks[:, :32], first.reshape(16, 32).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"rows": "tokens", "token_pool": 3}, "token_pool: 3 does not divide its 2 x 2 patch grid"),
        ({"rows": "tubelet", "token_pool": 2}, "token_pool: 2; a positive number, with rows: tokens"),
        ({"rows": "tokens", "layers": [3]}, "layers: [3]; this checkpoint has blocks 1 to 2"),
        ({"rows": "tokens", "layers": [0]}, "layers: [0]; distinct block numbers from 1"),
    ],
)
def test_vjepa2_token_options_that_cannot_work_name_the_key(tmp_path, vjepa2_folder, extra, message):
    source = write_input(tmp_path / "clips", "clips", {"v": frames(8, 48).reshape(2, 4, 48, 48, 3)})
    config = {"input": str(source), "weights": str(vjepa2_folder), **extra}
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_features("vjepa2", config, tmp_path / "f", loader_workers=0)


def test_vjepa2_refuses_clips_of_another_length(tmp_path, vjepa2_folder):
    source = write_input(tmp_path / "clips", "clips", {"v": frames(6, 48).reshape(2, 3, 48, 48, 3)})
    with pytest.raises(ConfigError, match="takes clips of 4 frames but .* has 3: set clip_len: 4"):
        run_features("vjepa2", {"input": str(source), "weights": str(vjepa2_folder)}, tmp_path / "f", loader_workers=0)


@pytest.mark.parametrize("rows", ["frame", "shared"])
def test_videoprism_rows_are_its_encoder_per_frame_or_its_video_text_embedding(tmp_path, videoprism_folder, rows):
    from transformers import LlavaOnevisionVideoProcessor, VideoPrismClipModel

    clips, source = clips_input(tmp_path, 48)
    config = {"input": str(source), "weights": str(videoprism_folder), "dtype": "float32", "precision": "float32"}
    run_features("videoprism", {**config, "rows": rows}, tmp_path / "f", loader_workers=0)
    # VideoPrismProcessor's call: its video processor at the model's size, not normalised
    processor = LlavaOnevisionVideoProcessor()
    theirs = processor([c for c in clips], size={"height": 36, "width": 36}, do_normalize=False, return_tensors="pt")[
        "pixel_values_videos"
    ]
    model = VideoPrismClipModel.from_pretrained(videoprism_folder).eval()
    got, stamps = StoreReader(tmp_path / "f").get("v")
    with torch.inference_mode():
        if rows == "shared":
            expected = model.get_video_features(pixel_values_videos=theirs).pooler_output.reshape(2, 32)
            assert stamps.tolist() == [1.0, 3.0]
        else:
            tokens = model.video_model.vision_model(pixel_values_videos=theirs).last_hidden_state  # (2, 4 x 4, 32)
            expected = tokens.reshape(2, 4, 4, 32).mean(2).reshape(8, 32)
            np.testing.assert_allclose(stamps, FRAME_TIMES, atol=1e-6)
    cosine = torch.nn.functional.cosine_similarity(torch.from_numpy(got), expected, dim=-1)
    assert got.shape == tuple(expected.shape) and cosine.min() > 0.999  # tensor resize against PIL's
    if rows == "shared":
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_videoprism_token_rows_are_every_patch_of_every_frame_and_average_to_the_frame_rows(
    tmp_path, videoprism_folder
):
    frame, tokens = default_and_token_rows(tmp_path, "videoprism", videoprism_folder)
    rows, stamps = tokens.get("v")
    assert rows.shape == (32, 32) and tokens.text("token_grid") == ["2x4x2x2"]  # 2 clips x 4 frames x 2 x 2
    np.testing.assert_allclose(rows.reshape(8, 4, 32).mean(1), frame.get("v")[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stamps, np.repeat(FRAME_TIMES, 4), atol=1e-6)
    assert "token_pool" not in frame.recipe.backbone


def test_videoprism_shared_rows_need_a_video_text_checkpoint(tmp_path, weights_dir, videoprism_folder):
    from transformers import VideoPrismClipModel

    encoder = weights_dir / "tiny-videoprism-encoder"
    VideoPrismClipModel.from_pretrained(videoprism_folder).video_model.vision_model.save_pretrained(encoder)
    _, source = clips_input(tmp_path, 48)
    config = {"input": str(source), "weights": str(encoder), "dtype": "float32", "precision": "float32"}
    run_features("videoprism", config, tmp_path / "frame", loader_workers=0)  # the encoder alone gives frame rows
    run_features("videoprism", {**config, "weights": str(videoprism_folder)}, tmp_path / "lvt", loader_workers=0)
    assert_same_rows(StoreReader(tmp_path / "frame"), StoreReader(tmp_path / "lvt"), atol=1e-6)
    with pytest.raises(WeightsError, match="rows: shared needs a video-text checkpoint .* set rows: frame"):
        run_features("videoprism", {**config, "rows": "shared"}, tmp_path / "shared", loader_workers=0)


@pytest.mark.parametrize("rows", ["frame", "shared"])
def test_pe_video_rows_follow_pe_video_model_forward_from_an_audio_video_checkpoint(tmp_path, pe_av_folder, rows):
    from transformers import AutoVideoProcessor

    clips, source = clips_input(tmp_path, 40)
    config = {"input": str(source), "weights": str(pe_av_folder), "dtype": "float32", "precision": "float32"}
    run_features("pe_video", {**config, "rows": rows}, tmp_path / "f", loader_workers=0)
    theirs = AutoVideoProcessor.from_pretrained(pe_av_folder)([c for c in clips], return_tensors="pt")
    video_model = tiny_pe_av().video_model  # the published nesting, the weights saved in pe_av_folder
    got, stamps = StoreReader(tmp_path / "f").get("v")
    with torch.inference_mode():
        out = video_model.video_encoder(pixel_values_videos=theirs["pixel_values_videos"])
        if rows == "shared":  # as PeVideoModel.forward embeds a video
            expected = torch.nn.functional.normalize(video_model.video_head(out.pooler_output), dim=-1)
            assert stamps.tolist() == [1.0, 3.0]
        else:
            expected = out.last_hidden_state.reshape(8, 32)
            np.testing.assert_allclose(stamps, FRAME_TIMES, atol=1e-6)
    cosine = torch.nn.functional.cosine_similarity(torch.from_numpy(got), expected, dim=-1)
    assert got.shape == tuple(expected.shape) and cosine.min() > 0.999


def test_pe_video_refuses_another_model_and_a_checkpoint_missing_weights(tmp_path, pe_av_folder, videoprism_folder):
    import shutil

    _, source = clips_input(tmp_path, 40)
    config = {"input": str(source), "dtype": "float32", "precision": "float32"}
    with pytest.raises(WeightsError, match="holds a 'videoprism' model, not PE video"):
        run_features("pe_video", {**config, "weights": str(videoprism_folder)}, tmp_path / "a", loader_workers=0)
    broken = shutil.copytree(pe_av_folder, tmp_path / "broken")
    from safetensors.torch import load_file, save_file

    tensors = load_file(broken / "model.safetensors")
    save_file(
        {k: v for k, v in tensors.items() if not k.startswith("video_model.video_head")}, broken / "model.safetensors"
    )
    with pytest.raises(WeightsError, match="lacks .*video_head"):
        run_features("pe_video", {**config, "weights": str(broken)}, tmp_path / "b", loader_workers=0)


def tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("postprocess", [True, False])
def test_vggish_rows_equal_torchvggish(tmp_path, vggish_folder, postprocess):
    import torchvggish

    audio = {"long": tone(3.0), "short": tone(0.5), "silent": np.zeros(0, np.float32)}
    source = write_input(tmp_path / "audio", "audio", audio)
    config = {
        "model": "vggish",
        "input": str(source),
        "weights": str(vggish_folder),
        "postprocess": postprocess,
        "dtype": "float32",
        "precision": "float32",
    }
    run_features("vggish", config, tmp_path / "v", loader_workers=0)
    store = StoreReader(tmp_path / "v")
    model = torchvggish.VGG(torchvggish.make_layers(), postprocess=False).eval()
    model.load_state_dict(torch.load(vggish_folder / "vggish-10086976.pth", weights_only=True))
    examples = torchvggish.waveform_to_examples(audio["long"].astype(np.float64), 16000).detach()
    with torch.inference_mode():
        expected = model(examples).numpy()
    if postprocess:  # the AudioSet release's PCA, clip to [-2, 2] and 8-bit quantization, written out here
        pca = torch.load(vggish_folder / "vggish_pca_params-970ea276.pth", weights_only=False)
        whitened = (pca["pca_eigen_vectors"] @ (expected.T - pca["pca_means"])).T
        expected = np.round((np.clip(whitened, -2, 2) + 2) * 255 / 4)
    rows, times = store.get("long")
    assert rows.shape == (3, 128) and times.tolist() == pytest.approx([0, 0.96, 1.92])
    np.testing.assert_allclose(rows, expected, rtol=1e-4, atol=1e-3 if not postprocess else 1.0)
    assert store.get("short")[0].shape == (0, 128) and store.get("silent")[0].shape == (0, 128)
    notes = dict(zip(store.ids, store.text("note"), strict=True))
    assert notes == {"long": "", "short": "audio shorter than one 0.96 s window", "silent": "no audio"}


@pytest.fixture(scope="session")
def ast_folder(weights_dir) -> Path:
    """A tiny AST audio classifier (the real classes, random weights): 1.28 s windows of 128 mel bins."""
    from transformers import ASTConfig as TransformersASTConfig
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    folder = weights_dir / "tiny-ast"
    config = TransformersASTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, max_length=128, num_labels=5
    )
    torch.manual_seed(0)
    ASTForAudioClassification(config).save_pretrained(folder)
    ASTFeatureExtractor(max_length=128).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("output", ["embedding", "logits"])
def test_ast_rows_are_the_models_own_output_per_window(tmp_path, ast_folder, output):
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    audio = {
        "long": tone(3.0),  # windows at 0, 1.28 and 2.56 s, the last one padded
        "short": tone(0.5),  # shorter than one window: one padded window
        "blip": tone(0.01),  # 160 samples: not one 25 ms frame
        "silent": np.zeros(0, np.float32),
    }
    source = write_input(tmp_path / "a", "audio", audio)
    config = {"input": str(source), "weights": str(ast_folder), "dtype": "float32", "precision": "float32"}
    run_features("ast", {**config, "output": output}, tmp_path / "f", loader_workers=0)
    store = StoreReader(tmp_path / "f")
    extractor = ASTFeatureExtractor.from_pretrained(ast_folder)
    model = ASTForAudioClassification.from_pretrained(ast_folder).eval()
    for vid, starts in {"long": [0.0, 1.28, 2.56], "short": [0.0]}.items():
        windows = [audio[vid][round(start * 16000) : round(start * 16000) + 128 * 160] for start in starts]
        with torch.inference_mode():
            inputs = extractor(windows, sampling_rate=16000, return_tensors="pt")["input_values"]
            result = model(input_values=inputs)
            encoder = model.audio_spectrogram_transformer(input_values=inputs)
        expected = result.logits if output == "logits" else encoder.pooler_output
        rows, stamps = store.get(vid)
        assert rows.shape == (len(starts), 5 if output == "logits" else 32)
        np.testing.assert_allclose(rows, expected.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stamps, starts, atol=1e-6)
        assert np.isfinite(rows).all()
    assert len(store.get("blip")[0]) == 0 and len(store.get("silent")[0]) == 0
    assert dict(zip(store.ids, store.text("note"), strict=True)) == {
        "long": "",
        "short": "",
        "blip": "audio shorter than one 25 ms spectrogram frame",
        "silent": "no audio",
    }


def test_ast_logits_refuse_a_checkpoint_without_a_trained_classifier(tmp_path, ast_folder):
    from transformers import ASTFeatureExtractor, ASTModel

    encoder_only = tmp_path / "encoder"
    ASTModel.from_pretrained(ast_folder).save_pretrained(encoder_only)
    ASTFeatureExtractor.from_pretrained(ast_folder).save_pretrained(encoder_only)
    source = write_input(tmp_path / "a", "audio", {"a": tone(1.0)})
    config = {"input": str(source), "weights": str(encoder_only), "output": "logits"}
    with pytest.raises(WeightsError, match=r"lacks \['classifier\..*use a checkpoint fine-tuned for classification"):
        run_features("ast", config, tmp_path / "f", loader_workers=0)
    run_features(
        "ast", {**config, "output": "embedding"}, tmp_path / "f", loader_workers=0
    )  # the encoder alone is whole
    assert StoreReader(tmp_path / "f").get("a")[0].shape == (1, 32)


def test_clap_rows_are_its_normalised_audio_and_text_features_in_one_space(tmp_path, clap_folder):
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    t = np.arange(12 * 48000) / 48000
    long = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    audio = {"long": long, "short": long[:48000], "silent": np.zeros(0, np.float32)}
    view = {"view": {"type": "audio", "sample_rate": 48000}}
    source = write_input(tmp_path / "a", "audio", audio, config=view)
    config = {"input": str(source), "weights": str(clap_folder), "dtype": "float32", "precision": "float32"}
    run_features("clap", config, tmp_path / "f", loader_workers=0)
    store = StoreReader(tmp_path / "f")
    extractor = ClapFeatureExtractor.from_pretrained(clap_folder)
    model = ClapModel.from_pretrained(clap_folder).eval()
    for vid, windows in {"long": [long[: 10 * 48000], long[10 * 48000 :]], "short": [long[:48000]]}.items():
        with torch.inference_mode():
            features = model.get_audio_features(**extractor(windows, sampling_rate=48000, return_tensors="pt"))
        rows, stamps = store.get(vid)
        expected = torch.nn.functional.normalize(features.pooler_output, dim=-1).numpy()
        np.testing.assert_allclose(rows, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stamps, [0.0, 10.0][: len(windows)])
    assert len(store.get("silent")[0]) == 0
    assert dict(zip(store.ids, store.text("note"), strict=True))["silent"] == "no audio"

    manifest = write_manifest(tmp_path / "m.csv", {"a": "applause", "b": "a dog barks"})
    run_features("clap_text", {**config, "input": str(manifest)}, tmp_path / "t", loader_workers=0)
    tokenizer = AutoTokenizer.from_pretrained(clap_folder)
    encoded = tokenizer("a dog barks", padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        text = model.get_text_features(**encoded).pooler_output
    text_rows = StoreReader(tmp_path / "t").get("b")[0]
    np.testing.assert_allclose(text_rows, torch.nn.functional.normalize(text, dim=-1).numpy(), rtol=1e-4, atol=1e-5)
    assert text_rows.shape[1] == rows.shape[1] == 16  # one space

    with pytest.raises(ConfigError, match="clap needs 48000 Hz audio; .* is 16000 Hz: set sample_rate: 48000"):
        at_16k = write_input(tmp_path / "a16", "audio", {"a": long[:16000]})
        run_features("clap", {**config, "input": str(at_16k)}, tmp_path / "g", loader_workers=0)


def test_whisper_rows_are_its_encoder_output_trimmed_to_the_audio(tmp_path, whisper_file):
    import whisper

    audio = {"v": tone(2.5), "long": tone(31.0, 300.0), "none": np.zeros(0, np.float32)}
    source = write_input(tmp_path / "audio", "audio", audio)
    config = {
        "model": "whisper",
        "input": str(source),
        "weights": str(whisper_file),
        "transcribe": False,
        "dtype": "float32",
        "precision": "float32",
    }
    run_features("whisper", config, tmp_path / "w", loader_workers=0)
    store = StoreReader(tmp_path / "w")
    model = whisper.load_model(str(whisper_file), device="cpu")
    with torch.inference_mode():  # the spectrogram as transcribe makes it: whole audio, padded with zero frames
        mel = whisper.log_mel_spectrogram(torch.from_numpy(audio["v"]), padding=whisper.audio.N_SAMPLES)
        mel = whisper.pad_or_trim(mel[:, : mel.shape[-1] - whisper.audio.N_FRAMES], whisper.audio.N_FRAMES)
        expected = model.encoder(mel[None])[0].numpy()
    rows, times = store.get("v")
    assert rows.shape == (125, 32)  # 2.5 s of 20 ms rows: the padding rows are gone
    np.testing.assert_allclose(rows, expected[:125], rtol=1e-4, atol=1e-4)
    assert times[1] == pytest.approx(0.02)
    long_rows, long_times = store.get("long")
    assert long_rows.shape == (1550, 32) and long_times[1500] == pytest.approx(30.0)
    assert store.get("none")[0].shape == (0, 32)
    assert store.info_names() == []  # no transcripts asked for: no empty transcript columns either


def test_audio_models_refuse_another_sample_rate(tmp_path, vggish_folder):
    config = {"view": {"type": "audio", "sample_rate": 8000}}
    source = write_input(tmp_path / "audio", "audio", {"v": tone(1.0)}, config=config)
    with pytest.raises(ConfigError, match="vggish needs 16000 Hz audio; .* is 8000 Hz: set sample_rate: 16000"):
        run_features(
            "vggish",
            {"model": "vggish", "input": str(source), "weights": str(vggish_folder)},
            tmp_path / "v",
            loader_workers=0,
        )


def test_every_registered_backbone_has_meta_and_a_builder():
    names = list_backbones()
    assert {"resnet50", "r2plus1d_18", "mvit_v2_s", "swin3d_t", "s3d", "videomae", "bert", "vggish", "whisper"} <= set(
        names
    )
    for name in names:
        entry = get_backbone(name)
        assert entry.input_kind in ("frames", "clips", "audio", "text") and entry.about
        assert issubclass(entry.config_cls, BackboneConfig) and callable(entry.build)
    assert get_backbone("efficientnet_b0").input_kind == "frames"  # any torchvision classifier
    # what `run` reads before torch is imported agrees with the registry, for every family's name
    ours = {name for name in names if get_backbone(name).backbone_cls.__module__.startswith("extract.backbones.")}
    assert set(READS) == ours
    assert all(input_kind(name) == get_backbone(name).input_kind for name in [*names, "efficientnet_b0"])


def test_run_starts_its_decoders_before_torch_is_imported():
    """Everything `run` needs up to the decoders' start, and the decode stage, leave torch (about 3 s) out."""
    code = (
        "import sys\n"
        "from extract.commands.ondemand import cmd_run\n"
        "from extract.stages.decode import run_decode\n"
        "from extract.backbones import input_kind\n"
        "from extract.ondemand.oneshot import run_one_shot\n"
        "assert input_kind('resnet50') == 'frames'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'transformers')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_unknown_backbone_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown backbone 'resnet5'; registered: .*resnet50"):
        get_backbone("resnet5")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"model": "bert", "input": "m.csv", "pooling": "max"}, "pooling: 'max' is not one of"),
        ({"model": "vggish", "input": "a", "pooling": "cls"}, r"unknown key\(s\) \['pooling'\]"),
        ({"model": "resnet50"}, "input: name the file it reads"),
    ],
)
def test_bad_backbone_params_name_the_key(values, message):
    from extract.backbones import backbone_config

    with pytest.raises(ConfigError, match=message):
        backbone_config("x", values)


def test_offline_without_cached_weights_fails_fast_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache; the network is unreachable
    monkeypatch.setattr("torch.hub.download_url_to_file", _no_network)
    source = write_input(tmp_path / "frames", "frames", {"a": frames(1)})
    with pytest.raises(WeightsError) as info:
        run_features("resnet50", {"input": str(source)}, tmp_path / "f", loader_workers=0)
    message = str(info.value)
    assert "resnet50-11ad3fa6.pth is not in the torch hub cache" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth") in message
    assert not (tmp_path / "f").exists()


def _no_network(*args, **kwargs):
    raise OSError("network is unreachable")


def test_weights_that_do_not_fit_the_model_are_refused(tmp_path, weights_dir):
    source = write_input(tmp_path / "frames", "frames", {"a": frames(1)})
    wrong = save_torchvision(weights_dir, "resnet18")
    with pytest.raises(WeightsError, match="is not a state dict of resnet50"):
        run_features("resnet50", {"input": str(source), "weights": str(wrong)}, tmp_path / "f", loader_workers=0)


def test_adding_a_video_runs_the_backbone_on_that_video_only(tmp_path, weights_dir, monkeypatch):
    from extract.backbones.image import ImageBackbone

    embedded = []
    original = ImageBackbone.embed
    monkeypatch.setattr(
        ImageBackbone, "embed", lambda self, batch: embedded.append(len(batch)) or original(self, batch)
    )
    config = {
        "model": "resnet18",
        "input": str(tmp_path / "frames"),
        "weights": str(save_torchvision(weights_dir, "resnet18")),
    }
    write_input(tmp_path / "frames", "frames", {"a": frames(3), "b": frames(3, seed=1)})
    run_features("r18", config, tmp_path / "f", loader_workers=0)
    assert sum(embedded) == 6
    embedded.clear()
    write_input(tmp_path / "frames", "frames", {"a": frames(3), "b": frames(3, seed=1), "c": frames(2, seed=2)})
    summary = run_features("r18", config, tmp_path / "f", loader_workers=0)
    assert sum(embedded) == 2 and (summary.computed, summary.reused) == (1, 2)
    assert StoreReader(tmp_path / "f").ids == ["a", "b", "c"]


def test_loader_workers_give_the_same_store_as_inline(tmp_path, weights_dir):
    source = write_input(tmp_path / "frames", "frames", {f"v{i}": frames(2, seed=i) for i in range(5)})
    config = {"model": "resnet18", "input": str(source), "weights": str(save_torchvision(weights_dir, "resnet18"))}
    run_features("r18", config, tmp_path / "inline", loader_workers=0, batch_size=3)
    run_features("r18", config, tmp_path / "workers", loader_workers=2, batch_size=3)
    assert_same_rows(StoreReader(tmp_path / "inline"), StoreReader(tmp_path / "workers"))


def test_failed_input_videos_are_recorded(tmp_path, weights_dir):
    source = tmp_path / "frames"
    with StoreWriter(source, row_shape=(64, 64, 3), dtype=np.uint8, attrs={"kind": "frames", "config": "{}"}) as w:
        w.add("ok", frames(1), np.zeros(1, np.float32), "s")
        w.add_failure("bad", "ffprobe failed: moov atom not found")
    config = {"model": "resnet18", "input": str(source), "weights": str(save_torchvision(weights_dir, "resnet18"))}
    summary = run_features("r18", config, tmp_path / "f", loader_workers=0)
    assert "moov atom not found" in summary.failures["bad"] and StoreReader(tmp_path / "f").ids == ["ok"]


# Real small weights, when ../shared/weights is beside the checkout.
REAL_WEIGHTS = SHARED / "weights"
needs_real = pytest.mark.skipif(not REAL_WEIGHTS.is_dir(), reason="../shared/weights is absent")


@needs_real
def test_whisper_tiny_en_transcribes_speech_in_a_generated_video(tmp_path):
    from extract.stages.decode import run_decode, views_from_params

    speech = SHARED / "media" / "speech" / "quick_brown_fox.wav"
    video = tmp_path / "fox.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x48:rate=10",
            "-i",
            str(speech),
            "-shortest",
            "-c:v",
            "libx264",
            "-c:a",
            "aac",
            str(video),
        ],
        check=True,
    )
    views = views_from_params({"views": {"audio": {"type": "audio"}}})
    run_decode([{"id": "fox", "video": str(video), "sha256": "x"}], views, tmp_path / "decoded", workers=1)
    config = {
        "model": "whisper",
        "input": str(tmp_path / "decoded" / "audio"),
        "weights": str(REAL_WEIGHTS / "whisper-tiny.en.pt"),
    }
    run_features("whisper", config, tmp_path / "whisper", loader_workers=0)
    store = StoreReader(tmp_path / "whisper")
    transcript = store.text("transcript")[0]
    words = "".join(c for c in transcript.lower() if c.isalpha() or c == " ").split()
    assert words == "the quick brown fox jumps over the lazy dog".split(), transcript
    assert store.text("language")[0] == "en"
    segments = json.loads(store.text("segments")[0])
    assert segments and segments[0]["start"] >= 0 and segments[-1]["end"] > segments[0]["start"]
    assert store.get("fox")[0].shape[1] == 384  # tiny's encoder width


@needs_real
def test_minilm_puts_a_paraphrase_closer_than_an_unrelated_sentence(tmp_path):
    texts = {
        "a": "A man is playing a guitar.",
        "b": "Someone plays the guitar.",
        "c": "The stock market fell sharply today.",
    }
    config = {
        "model": "bert",
        "input": str(write_manifest(tmp_path / "m.csv", texts)),
        "weights": str(REAL_WEIGHTS / "all-MiniLM-L6-v2"),
        "pooling": "mean",
        "dtype": "float32",
        "precision": "float32",
    }
    run_features("minilm", config, tmp_path / "m", loader_workers=0)
    store = StoreReader(tmp_path / "m")
    a, b, c = (store.get(v)[0][0] for v in "abc")

    def cosine(x, y):
        return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))

    assert cosine(a, b) > cosine(a, c) + 0.2


@pytest.mark.parametrize(
    "name", ["r2plus1d_18", "r3d_18", "mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_s", "swin3d_b", "resnet50"]
)
def test_registered_torchvision_backbones_load_and_give_their_width(tmp_path, weights_dir, name):
    entry = get_backbone(name)
    weights = save_torchvision(weights_dir, name)
    backbone = entry.build(entry.config_cls(model=name, input="x", weights=str(weights)), torch.device("cpu"))
    expected = {
        "r2plus1d_18": 512,
        "r3d_18": 512,
        "mvit_v1_b": 768,
        "mvit_v2_s": 768,
        "swin3d_t": 768,
        "swin3d_s": 768,
        "swin3d_b": 1024,
        "resnet50": 2048,
    }[name]
    assert backbone.dim == expected
    if entry.input_kind == "frames":
        batch = torch.zeros(2, 3, 224, 224)
    else:
        size = 224 if name.startswith("mvit") else 64
        batch = torch.zeros(1, 3, 16, size, size)
    assert backbone.embed(batch).shape == (len(batch), expected)


def test_make_video_fixture_is_decodable(tmp_path):  # guards the helpers the stage tests build on
    assert make_video(tmp_path / "x.mp4").stat().st_size > 0


def _family_case(name: str, tmp_path: Path, request) -> tuple[str, dict]:
    """(params key, config) of one small model per backbone family, on a fitting input store."""
    weights_dir = request.getfixturevalue("weights_dir")
    if name == "image":
        source = write_input(tmp_path / "in", "frames", {"a": frames(3), "b": frames(2, seed=1)})
        return "resnet18", {"input": str(source), "weights": str(save_torchvision(weights_dir, "resnet18"))}
    if name == "video":
        # one short clip: emulated bfloat16 3-D convolutions take minutes on a larger one
        source = write_input(tmp_path / "in", "clips", {"a": frames(2).reshape(1, 2, 64, 64, 3)})
        return "mc3_18", {"input": str(source), "weights": str(save_torchvision(weights_dir, "mc3_18"))}
    if name == "videomae":
        source = write_input(tmp_path / "in", "clips", {"a": frames(8, 48).reshape(2, 4, 48, 48, 3)})
        return "videomae", {"input": str(source), "weights": str(request.getfixturevalue("videomae_folder"))}
    if name == "text":
        manifest = write_manifest(tmp_path / "m.csv", {"a": "a cat on a mat", "b": "rain over the sea at night"})
        weights = request.getfixturevalue("bert_folder")
        return "bert", {"input": str(manifest), "weights": str(weights), "pooling": "mean"}
    source = write_input(tmp_path / "in", "audio", {"a": tone(3.0), "b": tone(2.0, 300.0)})
    if name == "vggish":
        weights = request.getfixturevalue("vggish_folder")
        return "vggish", {"input": str(source), "weights": str(weights), "postprocess": False}
    if name == "vjepa2":
        source = write_input(tmp_path / "in", "clips", {"a": frames(4, 48).reshape(1, 4, 48, 48, 3)})
        return "vjepa2", {"input": str(source), "weights": str(request.getfixturevalue("vjepa2_folder"))}
    if name in ("videoprism", "pe_video"):
        size, weights = (48, "videoprism_folder") if name == "videoprism" else (40, "pe_av_folder")
        source = write_input(tmp_path / "in", "clips", {"a": frames(4, size).reshape(1, 4, size, size, 3)})
        return name, {"input": str(source), "weights": str(request.getfixturevalue(weights))}
    if name == "ast":
        return "ast", {"input": str(source), "weights": str(request.getfixturevalue("ast_folder"))}
    weights = request.getfixturevalue("whisper_file")
    return "whisper", {"input": str(source), "weights": str(weights), "transcribe": False}


@pytest.mark.parametrize(
    "family", ["image", "video", "videomae", "text", "vggish", "whisper", "ast", "vjepa2", "videoprism", "pe_video"]
)
def test_bfloat16_rows_stay_within_cosine_0999_of_float32(tmp_path, request, family):
    # Forced bfloat16 runs on any CPU (emulated where it is not native, slower but the same rounding),
    # so the check runs everywhere instead of being skipped on machines without AVX512-BF16.
    key, config = _family_case(family, tmp_path, request)
    stores = {}
    for precision in ("float32", "bfloat16"):
        values = {**config, "dtype": "float32", "precision": precision}
        run_features(key, values, tmp_path / precision, loader_workers=0, device=torch.device("cpu"))
        stores[precision] = StoreReader(tmp_path / precision)
        assert stores[precision].attrs["precision"] == precision
    for vid in stores["float32"].ids:
        full, reduced = stores["float32"].get(vid)[0], stores["bfloat16"].get(vid)[0]
        assert full.shape == reduced.shape and len(full)
        cosine = (full * reduced).sum(1) / (np.linalg.norm(full, axis=1) * np.linalg.norm(reduced, axis=1))
        assert cosine.min() >= 0.999, f"{family} {vid}: min cosine {cosine.min():.5f}"
        assert not np.array_equal(full, reduced)  # bfloat16 really ran


def test_auto_precision_is_bfloat16_only_where_the_cpu_does_it_natively(tmp_path, weights_dir):
    from extract.backbones import compute_dtype, cpu_has_native_bf16

    native = cpu_has_native_bf16()
    assert compute_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if native else torch.float32)
    assert compute_dtype("auto", torch.device("cuda")) == torch.float16
    assert compute_dtype("float32", torch.device("cuda")) == torch.float32
    source = write_input(tmp_path / "in", "frames", {"a": frames(2)})
    config = {"model": "resnet18", "input": str(source), "weights": str(save_torchvision(weights_dir, "resnet18"))}
    run_features("r18", config, tmp_path / "f", loader_workers=0, device=torch.device("cpu"))
    attrs = StoreReader(tmp_path / "f").attrs
    assert attrs["precision"] == ("bfloat16" if native else "float32") and attrs["device"] == "cpu"


def test_clip_rows_equal_transformers_image_and_text_features(tmp_path, clip_folder):
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    video = frames(3, 48)
    source = write_input(tmp_path / "frames", "frames", {"v": video})
    config = {"input": str(source), "weights": str(clip_folder), "dtype": "float32", "precision": "float32"}
    run_features("clip", config, tmp_path / "img", loader_workers=0)
    manifest = write_manifest(tmp_path / "m.csv", {"a": "a dog on a beach", "b": "cooking pasta at night"})
    config = {**config, "input": str(manifest)}
    run_features("clip_text", config, tmp_path / "txt", loader_workers=0)

    model = CLIPModel.from_pretrained(clip_folder).eval()
    processor, tokenizer = CLIPImageProcessor.from_pretrained(clip_folder), AutoTokenizer.from_pretrained(clip_folder)
    with torch.inference_mode():
        pixels = processor(images=list(video), return_tensors="pt")["pixel_values"]  # PIL resize
        image = torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        ids = tokenizer(["a dog on a beach"], padding="max_length", max_length=77, return_tensors="pt")
        text = torch.nn.functional.normalize(model.get_text_features(**ids).pooler_output, dim=-1)
    rows = StoreReader(tmp_path / "img").get("v")[0]
    assert rows.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
    # tensors instead of PIL: the same sizes, mean and std, a slightly different bicubic kernel
    assert ((rows * image.numpy()).sum(1)).min() > 0.99
    np.testing.assert_allclose(StoreReader(tmp_path / "txt").get("a")[0][0], text[0].numpy(), rtol=1e-4, atol=1e-5)
    recipe = json.loads(StoreReader(tmp_path / "img").attrs["recipe"])
    assert recipe["preprocessing"]["resize"] == [32] and recipe["preprocessing"]["center_crop"] == [32, 32]


def test_clip_token_rows_are_the_image_towers_patches_without_its_class_token(tmp_path, clip_folder):
    from transformers import CLIPImageProcessor, CLIPModel

    video = frames(3, 48)
    source = write_input(tmp_path / "frames", "frames", {"v": video}, {"v": np.array([0.5, 1.5, 2.5], np.float32)})
    config = {"input": str(source), "weights": str(clip_folder), "dtype": "float32", "precision": "float32"}
    run_features("clip", {**config, "rows": "tokens"}, tmp_path / "tokens", loader_workers=0)
    run_features("clip", config, tmp_path / "shared", loader_workers=0)
    reader = StoreReader(tmp_path / "tokens")
    rows, stamps = reader.get("v")
    model = CLIPModel.from_pretrained(clip_folder).eval()
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    pixels = torch.stack(
        [
            TensorImageProcessor(CLIPImageProcessor.from_pretrained(clip_folder).to_dict())(
                torch.from_numpy(f).permute(2, 0, 1)[None]
            )[0]
            for f in video
        ]
    )
    with torch.inference_mode():
        tokens = model.vision_model(pixel_values=pixels).last_hidden_state[:, 1:]  # the class token left out
    assert rows.shape == (3 * side * side, model.config.vision_config.hidden_size)
    np.testing.assert_allclose(rows, tokens.reshape(len(rows), -1).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stamps, np.repeat([0.5, 1.5, 2.5], side * side))
    assert reader.text("token_grid") == [f"3x1x{side}x{side}"]
    assert "rows" not in StoreReader(tmp_path / "shared").recipe.backbone  # the image-text rows keep their recipe


def test_whisper_transcripts_decoded_in_a_batch_equal_transcribe(shared_media):
    weights = SHARED / "weights" / "whisper-tiny.en.pt"
    if not weights.is_file():
        pytest.skip("../shared/weights/whisper-tiny.en.pt is absent")
    from extract import media
    from extract.backbones import VideoInput, backbone_config
    from extract.stages.features import ExtractRunner, Source

    files = sorted((shared_media / "speech").glob("*.wav")) + [shared_media / "tiktok_talking.mp4"]
    audio = {f.name: media.decode_audio(f, 16000, None) for f in files}
    entry, config = backbone_config("whisper", {"input": "-", "weights": str(weights), "precision": "float32"})
    backbone = entry.build(config, torch.device("cpu"))
    runner = ExtractRunner(backbone, Source(Path("-"), "audio", list(audio), list(audio), {}), batch_size=16)
    rows = dict(runner.run((vid, runner.units_for(VideoInput(vid, samples))) for vid, samples in audio.items()))
    assert backbone.transcripts_batched == len(audio)  # none fell back to transcribe
    for vid, samples in audio.items():
        assert rows[vid].columns == backbone._transcribe(VideoInput(vid, samples)), vid  # text, language, segments
    assert "Barbie" in rows["tiktok_talking.mp4"].columns["transcript"]


def test_hugging_face_repository_ids_are_names_and_paths_are_paths(tmp_path):
    from extract.backbones.weights import is_local_path

    assert not is_local_path("openai/clip-vit-base-patch32", repo_ids=True)
    assert not is_local_path("bert-base-uncased", repo_ids=True)
    assert is_local_path("openai/clip-vit-base-patch32")  # torchvision, whisper: no names with a slash
    assert is_local_path("weights/clip/v1", repo_ids=True) and is_local_path("./clip", repo_ids=True)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert is_local_path(str(tmp_path / "org" / "name"), repo_ids=True)


def test_the_private_whisper_names_reelfeat_uses_are_still_there():
    """extract/backbones/whisper.py finds a checkpoint's file through whisper's `_MODELS` and `_download`
    (no public call returns the file, whose sha256 the recipe records). openai-whisper is pinned in
    requirements.txt; this fails when an upgrade moves or reshapes either name."""
    import inspect

    import whisper

    assert set(whisper._MODELS) == set(whisper.available_models()) and "tiny.en" in whisper._MODELS
    assert all(url.startswith("https://") and url.endswith(".pt") for url in whisper._MODELS.values())
    assert list(inspect.signature(whisper._download).parameters) == ["url", "root", "in_memory"]
