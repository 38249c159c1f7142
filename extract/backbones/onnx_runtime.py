"""ONNX Runtime for torchvision image classifiers on the CPU, where it is faster than eager torch.

Measured on ResNet50, batches of 8 on 2 cores (`python bench/cpu_paths.py`), milliseconds a frame:

| CPU | eager float32 | ONNX Runtime float32 | eager bfloat16 | ONNX Runtime int8 |
|---|---|---|---|---|
| AMD EPYC, AVX2 | 82.9 | 62.2 | (emulated, slower) | not measured |
| Intel Xeon, AMX | 32.0 | 23.1 | 12.2 | 8.5 |

So float32 on the CPU runs here (CPUs without native bfloat16, or `precision: float32`), bfloat16
stays eager, and `precision: int8` asks for int8 (static quantization, QDQ, int8 weights per channel,
uint8 activations). Its activation ranges come from a fixed set of seeded 1/f-noise images (natural
images' spectrum), so the int8 model is the same on every machine for the same weights; how close its
rows are to float32 is measured on each run's first batch and kept in the store (`int8_min_cosine`).

Exporting costs seconds (3.1 s for ResNet50, and 2.7 s more to quantize), so the model is kept per
weights sha256, precision and input size in the torch hub folder beside the weights (`reelfeat-onnx/`),
written atomically under a name that carries the sha256 of its bytes, which is checked when it is
loaded: only a machine's first run pays.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from extract.core.files import file_sha256, publish, temp_path

log = logging.getLogger(__name__)
CALIBRATION_IMAGES = 16


def onnx_cache() -> Path:
    return Path(torch.hub.get_dir()) / "reelfeat-onnx"


class OnnxClassifier:
    """A classifier (its head removed) as an ONNX Runtime session: a batch (N, 3, H, W) of float32
    pixels normalised by `normalize` (the weights' mean and std) in, (N, D) rows out."""

    def __init__(
        self,
        build: Callable[[], nn.Module],
        key: str,
        size: tuple[int, int],
        normalize: tuple[list[float], list[float]],
        precision: str,
        threads: int,
    ) -> None:
        import onnxruntime

        self.precision, self.size, self.threads = precision, size, threads
        self.version = f"onnxruntime {onnxruntime.__version__}"
        stem = f"{key}-{size[0]}x{size[1]}"
        float_model = self._cached(f"{stem}-float32", lambda path: _export(build(), size, path))
        path = float_model
        if precision == "int8":  # the quantizer's version shapes the model too
            int8 = f"{stem}-int8-ort{onnxruntime.__version__}"
            path = self._cached(int8, lambda out: _quantize(float_model, calibration_images(size, *normalize), out))
        self.session = self._session(path)
        self.dim = int(self.session.get_outputs()[0].shape[1])
        self._float = self._session(float_model) if precision == "int8" else None
        self.int8_min_cosine: float | None = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        rows = self.session.run(None, {"x": np.ascontiguousarray(batch, dtype=np.float32)})[0]
        if self._float is not None:  # the first batch: how far int8 lies from float32, for the store
            exact = self._float.run(None, {"x": np.ascontiguousarray(batch, dtype=np.float32)})[0]
            self.int8_min_cosine = round(float(_cosines(rows, exact).min()), 6)
            self._float = None
        return rows

    def _session(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # idle threads give their core back at once: decoders share the cores between batches
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _cached(self, stem: str, make: Callable[[Path], None]) -> Path:
        """The model `stem` from the cache, its bytes checked against the sha256 in its name; made
        (and kept) where it is missing or damaged. Where the cache cannot be written, the model is
        made for this process only, in a temporary folder."""
        folder = onnx_cache()
        for found in sorted(folder.glob(f"{stem}-*.onnx")):
            if file_sha256(found).startswith(found.stem.rsplit("-", 1)[1]):
                return found
            log.warning("%s does not match the sha256 in its name: made again", found)
            found.unlink(missing_ok=True)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = temp_path(folder / f"{stem}.onnx")
            tmp.touch()
        except OSError as exc:
            log.warning("cannot keep the exported model in %s (%s): it is made for this run only", folder, exc)
            self._scratch = tempfile.TemporaryDirectory(prefix="reelfeat-onnx-")
            folder = Path(self._scratch.name)
            tmp = temp_path(folder / f"{stem}.onnx")
        try:
            make(tmp)
            return publish(tmp, folder / f"{stem}-{file_sha256(tmp)[:16]}.onnx")
        finally:
            tmp.unlink(missing_ok=True)


def cache_key(model: str, weights_sha256: str) -> str:
    """The cache's name for a model with these weights (and this exporter's version)."""
    version = hashlib.sha256(torch.__version__.encode()).hexdigest()[:8]
    return f"{model}-{weights_sha256[:16]}-torch{version}"


def _export(model: nn.Module, size: tuple[int, int], path: Path) -> None:
    height, width = size
    sample = torch.zeros(2, 3, height, width)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            model.eval(),
            (sample,),
            str(path),
            input_names=["x"],
            output_names=["rows"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def _quantize(float_model: Path, images: np.ndarray, path: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": images[i : i + 4]} for i in range(0, len(images), 4)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    prepared = path.with_name(path.name + ".prepared.onnx")
    try:
        quant_pre_process(str(float_model), str(prepared))
        quantize_static(
            str(prepared),
            str(path),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    finally:
        prepared.unlink(missing_ok=True)


def calibration_images(
    size: tuple[int, int], mean: list[float], std: list[float], count: int = CALIBRATION_IMAGES
) -> np.ndarray:
    """Seeded 1/f-noise images (the spectrum of natural images, channels correlated), normalised as
    the classifier is fed: the activation ranges int8 is calibrated on."""
    rng = np.random.default_rng(0)
    height, width = size
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    falloff = np.hypot(fx, fy)
    falloff[0, 0] = 1.0
    images = []
    for _ in range(count):
        shape = (3, height, width // 2 + 1)
        spectrum = (rng.normal(size=shape) + 1j * rng.normal(size=shape)) / falloff
        image = np.fft.irfft2(spectrum, s=(height, width))
        image = image + 0.5 * image.mean(0, keepdims=True)
        low, high = np.percentile(image, [1, 99])
        images.append(np.clip((image - low) / (high - low), 0, 1))
    pixels = np.stack(images)
    return ((pixels - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]).astype(np.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(norms, 1e-12)
