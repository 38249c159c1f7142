"""The report stage on the demo data: `dvc repro` in a throwaway git + DVC project made from this
repository and `data/demo` (24 clips), with tiny random backbones and one head of each task kind."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, SHARED, git, ran, save_torchvision, sh
from PIL import Image

VOID = {"meta", "img", "br", "hr", "input", "link"}


class Page(HTMLParser):
    """Parses the page strictly enough to fail on broken nesting, and keeps what the tests look at."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.open: list[str] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[tuple[str, str]] = []  # (src, alt)
        self.tags: set[str] = set()
        self.feed(text)
        self.close()
        assert self.open == [], f"unclosed elements: {self.open}"

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if "id" in attrs:
            assert attrs["id"] not in self.ids, f"duplicate id {attrs['id']}"
            self.ids.add(attrs["id"])
        if tag == "a":
            self.links.append(attrs.get("href", ""))
        if tag == "img":
            self.images.append((attrs.get("src", ""), attrs.get("alt", "")))
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()


@pytest.fixture(scope="module")
def project(tmp_path_factory, whisper_file, clip_folder) -> Path:
    root = tmp_path_factory.mktemp("report")
    repo = root / "repo"
    repo.mkdir()
    for name in ["extract", "heads", "reelfeat"]:
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ["dvc.yaml", "params.yaml", ".dvcignore"]:
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "data" / "demo", repo / "data" / "demo")
    weights = save_torchvision(root, "resnet18")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["decode"] = {
        "views": {
            "frames": {"type": "frames", "num_frames": 4, "max_seconds": 10, "size": [32, 32]},
            "audio": {"type": "audio", "sample_rate": 16000},
        }
    }
    clip = str(clip_folder)
    # real Whisper tiny.en where ../shared has it: it stops at the end of speech, where random weights
    # decode nonsense up to the token limit (74 s against a few here)
    real_whisper = SHARED / "weights" / "whisper-tiny.en.pt"
    whisper = real_whisper if real_whisper.is_file() else whisper_file
    params["backbones"] = {
        "resnet18": {"input": "data/decoded/frames", "weights": str(weights)},
        "whisper": {"input": "data/decoded/audio", "weights": str(whisper)},
        "clip": {"input": "data/decoded/frames", "weights": clip},
        "clip_text": {"input": "data/prepared/manifest.csv", "weights": clip},
    }
    params["encoders"] = {}
    quick = {"epochs": 3, "bootstrap": 20, "batch_size": 8}
    frames = "data/features/resnet18"
    params["heads"] = {
        "risky": {"task": "binary", "target": "risky", "inputs": [{"store": frames, "pool": "attention"}], **quick},
        "tags": {
            "task": "multi_label",
            "target": "tags",
            "inputs": [{"store": frames, "pool": "lstm", "hidden": 8}, {"store": "data/features/clip_text"}],
            **quick,
        },
        "tags_zero_shot": {
            "kind": "zero_shot",
            "task": "multi_label",
            "target": "tags",
            "text_model": clip,
            "inputs": [{"store": "data/features/clip"}, {"store": "data/features/clip_text"}],
        },
        "action": {
            "task": "multi_class",
            "target": "action",
            "inputs": [{"store": frames}],
            "sweep": {"lr": [1e-3, 3e-3], "hidden": [[], [16]]},
            **quick,
        },
        "intensity": {
            "task": "multi_regression",
            "target": ["intensity_joy", "intensity_energy"],
            "inputs": [{"store": frames}],
            **quick,
        },
    }
    params["insight"] = {"resnet18": {"store": frames}}
    params["report"] |= {"worst": 2, "strip_frames": 4, "maps": [frames, "data/features/clip"], "map_label": "action"}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("/data/*\n!/data/demo/\n")
    git(repo, "init", "-q")
    sh(repo, "dvc", "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "project")
    assert "report" in ran(sh(repo, "dvc", "repro"))
    return repo


def page(project: Path) -> tuple[str, Page]:
    text = (project / "data" / "report" / "index.html").read_text(encoding="utf-8")
    return text, Page(text)


def test_every_head_has_its_section_and_a_row_in_the_metrics_table(project):
    text, parsed = page(project)
    heads = yaml.safe_load((project / "params.yaml").read_text())["heads"]
    for name in heads:
        assert f"head-{name}" in parsed.ids
        assert f"#head-{name}" in parsed.links
    assert {"heads", "stores", "run"} <= parsed.ids
    # the zero-shot head is the baseline beside the trained tag head, with intervals on the metrics
    tags_table = text[text.index("<h3>tags ") : text.index("</table>", text.index("<h3>tags "))]
    assert "#head-tags" in tags_table and "zero-shot baseline" in tags_table and 'class="ci">[' in tags_table
    # beneath a head whose test videos have train duplicates (insight@resnet18), its leakage-free row
    dropped = {}
    for name in heads:
        metrics = json.loads((project / "data/heads" / name / "metrics.json").read_text())
        dropped[name] = metrics.get("test_leakage_free", {}).get("dropped", 0)
        row = f"leakage-free: {dropped[name]} test videos with a train duplicate dropped"
        assert (row in text) == bool(dropped[name]), name
    assert any(dropped.values())


def test_every_image_is_inline_and_nothing_is_fetched(project):
    text, parsed = page(project)
    assert "script" not in parsed.tags and "link" not in parsed.tags
    assert all(not href.startswith(("http:", "https:", "//")) for href in parsed.links)
    assert len(parsed.images) >= 5 * 3  # per head at least a curve and two worst videos
    for src, alt in parsed.images:
        kind, _, payload = src.partition(";base64,")
        assert kind in ("data:image/png", "data:image/jpeg"), f"{alt}: not an inline image"
        image = Image.open(io.BytesIO(base64.b64decode(payload)))
        image.load()
        assert image.width > 50 and image.height > 30, alt


def test_heads_show_their_plots_classes_worst_videos_and_attention(project):
    text, parsed = page(project)
    alts = [alt for _, alt in parsed.images]
    assert alts.count("ROC and precision-recall") == 3  # risky, tags, tags_zero_shot
    assert alts.count("confusion matrix") == 1 and alts.count("predicted vs true") == 1
    # attention pooling (risky) and LSTM attention (tags) are drawn over their worst videos' strips
    assert alts.count("decoded frames and the head's attention over its rows") == 2 + 2
    section = text[text.index('id="head-tags"') : text.index('id="head-tags_zero_shot"')]
    assert "Per class (test)" in section and "F1 at the tuned threshold" in section
    for label in ("bright", "music", "striped", "talking"):
        assert f'<td class="num">{label}</td>' in section
    assert section.count('<div class="video">') == 2
    assert "<b>caption</b>: " in section and "<b>transcript</b>: " in section
    assert "true labels: " in section
    # a swept head: its leaderboard and the val metric against each swept value; the winner in metrics.json
    action = text[text.index('id="head-action"') : text.index('id="head-intensity"')]
    assert "Sweep: 4 configurations, kept by val_accuracy" in action and action.count('<tr class="kept">') == 1
    assert alts.count("val_accuracy against each swept value") == 1
    best = json.loads((project / "data/heads/action/metrics.json").read_text())["best"]
    assert set(best) == {"lr", "hidden", "val_accuracy", "val_loss", "epochs_run", "best_epoch"}


def test_the_report_reads_the_scores_evaluate_wrote_and_runs_no_head_over_the_test_split(project):
    """Each head's test_scores.npz holds the test split's videos with exactly the scores its metrics came from."""
    from heads.checkpoint import load_head
    from heads.evaluate import read_scores

    with open(project / "data/prepared/manifest.csv", encoding="utf-8") as table:
        test_ids = {row["id"] for row in csv.DictReader(table) if row["split"] == "test"}
    for name in yaml.safe_load((project / "params.yaml").read_text())["heads"]:
        folder = project / "data/heads" / name
        ids, truth, scores = read_scores(folder)
        model, checkpoint = load_head(folder)
        metrics = json.loads((folder / "metrics.json").read_text())["test"]
        assert set(ids) == test_ids and len(ids) == len(truth) == len(scores) == metrics["n"]
        again = model.task.kind.metrics(model.task, truth, scores, checkpoint.thresholds)
        assert {k: round(float(v), 6) for k, v in again.items()} == {k: metrics[k] for k in again}


def test_stores_and_the_last_run_are_listed(project):
    text, _ = page(project)
    stores = text[text.index('id="stores"') : text.index('id="run"')]
    for store in ["data/decoded/frames", "data/decoded/audio", "data/features/resnet18", "data/features/whisper"]:
        assert f"<code>{store}</code>" in stores
    assert "sha256 " in stores and "ImageClassification" in stores  # weights and preprocessing
    run = text[text.index('id="run"') :]
    for stage in ["prepare", "decode", "extract@resnet18", "train@risky", "evaluate@tags"]:
        assert f"<td>{stage}</td>" in run
    decode = run[run.index("<td>decode</td>") : run.index("</tr>", run.index("<td>decode</td>"))]
    assert '<td class="num">24</td>' in decode  # videos computed, and a rate beside them


def test_a_headless_chromium_screenshot_is_not_blank(project, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium); ./run.sh test installs it")
    shot = tmp_path / "shot.png"
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,2400"]
    url = (project / "data" / "report" / "index.html").as_uri()
    try:
        done = subprocess.run([*args, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.skip("chromium did not finish a screenshot in 120 s")
    if not shot.is_file():
        pytest.skip(f"chromium could not start here: {done.stderr.strip()[-300:]}")
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2400, 1200)
    # text, tables and plots: many distinct colours and a fair share of ink, not one flat background
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200
    assert (pixels.min(axis=2) < 128).mean() > 0.01


def test_a_second_repro_rebuilds_nothing_and_the_same_inputs_give_the_same_page(project, tmp_path):
    assert ran(sh(project, "dvc", "repro")) == set()
    # the same inputs give the same page, byte for byte
    sh(project, "python", "-m", "reelfeat", "report", "--out", str(tmp_path / "again.html"))
    assert (tmp_path / "again.html").read_bytes() == (project / "data" / "report" / "index.html").read_bytes()
    # a head's param reruns the report with the head: tests/test_dvc.py


def test_each_configured_store_has_a_map_with_its_knn_probe_inline(project):
    page = (project / "data" / "report" / "index.html").read_text()
    section = page[page.index('<section id="maps">') : page.index('<section id="stores">')]
    for store in ("data/features/resnet18", "data/features/clip"):
        assert f'alt="map of {store}"' in section
    assert section.count('<img src="data:image/png;base64,') == 2


def test_report_params_are_checked_by_name():
    from extract.core.config import ConfigError
    from reelfeat.report.config import report_config

    assert report_config({"worst": 2}).worst == 2 and report_config(None).frames == "data/decoded/frames"
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['wrost'\]"):
        report_config({"wrost": 2})
    with pytest.raises(ConfigError, match="report.strip_frames: 0"):
        report_config({"strip_frames": 0})


def test_drawing_a_figure_leaves_matplotlibs_settings_alone():
    import matplotlib

    from reelfeat.report import figures

    before, backend = dict(matplotlib.rcParams), matplotlib.get_backend()
    uri = figures.losses([{"epoch": 1, "train_loss": 0.5, "val_loss": 0.6}, {"epoch": 2, "train_loss": 0.4}])
    assert uri.startswith("data:image/png;base64,")
    assert dict(matplotlib.rcParams) == before and matplotlib.get_backend() == backend
