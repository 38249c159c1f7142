"""The report page: HTML written directly (no template engine, no script), every image inline, from
what `gather.py` read; nothing here opens a file."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import numpy as np

from extract.core.files import write_text
from reelfeat.report import figures
from reelfeat.report.config import ReportConfig
from reelfeat.report.gather import ReportData, StoreMap, VideoFacts, gather
from reelfeat.report.review import HeadReview, Mistake

# metrics in the order people look for them; any others follow, sorted
METRIC_ORDER = (
    "roc_auc f1 precision recall accuracy top1_accuracy f1_macro f1_micro f1_micro_global exact_match "
    "map gap hit@1 hit@2 hit@3 hit@5 pearson mse mae"
).split()

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ci { color: #777; font-size: 11px; } .baseline { background: #fff8e5; } .error { color: #b00020; }
.video { border: 1px solid #e3e3e3; border-radius: 4px; padding: 0.5em 0.8em; margin: 0.8em 0; }
.video h4 { margin: 0.2em 0; } .video p { margin: 0.25em 0; } img { max-width: 100%; }
.muted { color: #777; } tr.kept td { font-weight: bold; } nav a { margin-right: 0.8em; } code { font-size: 12px; }
"""


def write_page(config: ReportConfig, out: str | Path) -> Path:
    """Write the page to `out`; returns its path."""
    return write_text(out, render(gather(config)) + "\n")


def render(data: ReportData) -> str:
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>reelfeat report</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>reelfeat report</h1>",
        _overview(data.rows, data.reviews),
        '<nav><a href="#heads">heads</a><a href="#stores">stores</a><a href="#run">last run</a></nav>',
        _metrics_tables(data.reviews, data.failed),
    ]
    parts += [_head_section(review, data) for review in data.reviews]
    parts += [_maps_section(data), _stores_section(data), _run_section(data), "</body></html>"]
    return "\n".join(parts)


def _overview(rows: dict[str, dict], reviews: list[HeadReview]) -> str:
    splits = {s: sum(r.get("split") == s for r in rows.values()) for s in ("train", "val", "test")}
    counts = ", ".join(f"{n} {s}" for s, n in splits.items())
    return f'<p class="muted">{len(rows)} videos in the manifest ({counts}); {len(reviews)} heads evaluated.</p>'


def _value(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def _metric_names(metrics: dict) -> list[str]:
    names = [k for k in metrics if k not in ("n", "ci95") and "/" not in k]
    return sorted(names, key=lambda k: (METRIC_ORDER.index(k) if k in METRIC_ORDER else len(METRIC_ORDER), k))


def _metrics_tables(reviews: list[HeadReview], failed: dict[str, str]) -> str:
    """One table per task and target: the heads that answer the same question, side by side."""
    groups: dict[tuple[str, tuple[str, ...]], list[HeadReview]] = {}
    for review in reviews:
        groups.setdefault((review.task.kind.name, tuple(review.task.columns)), []).append(review)
    out = ['<section id="heads"><h2>Heads: test metrics</h2>']
    out.append('<p class="muted">Each value is on the test split; its 95% bootstrap interval is in brackets.</p>')
    for (kind, columns), members in sorted(groups.items()):
        members.sort(key=lambda r: (r.config.kind == "zero_shot", r.name))
        names: list[str] = []
        for review in members:
            names += [n for n in _metric_names(review.metrics.get("test", {})) if n not in names]
        out.append(f"<h3>{escape(', '.join(columns))} <span class='muted'>({escape(kind)})</span></h3>")
        header = "".join(f"<th>{escape(n)}</th>" for n in names)
        out.append(f"<table><tr><th>head</th><th>inputs</th><th>n</th>{header}</tr>")
        for review in members:
            test = review.metrics.get("test", {})
            baseline = review.config.kind == "zero_shot"
            label = f'<a href="#head-{escape(review.name)}">{escape(review.name)}</a>'
            label += " <span class='muted'>(zero-shot baseline)</span>" if baseline else ""
            row_class = ' class="baseline"' if baseline else ""
            out.append(
                f"<tr{row_class}><td>{label}</td><td>{escape(_inputs(review))}</td>"
                f'<td class="num">{_value(test.get("n"))}</td>{_metric_cells(test, names)}</tr>'
            )
            free = review.metrics.get("test_leakage_free")
            if free and free.get("dropped"):  # the same head without the test videos duplicated in train
                out.append(
                    f'<tr class="leakage-free"><td class="muted">&nbsp;&nbsp;leakage-free: {free["dropped"]} test '
                    f'videos with a train duplicate dropped</td><td></td><td class="num">{_value(free.get("n"))}</td>'
                    f"{_metric_cells(free, names)}</tr>"
                )
        out.append("</table>")
    for name, error in sorted(failed.items()):
        out.append(f'<p class="error">{escape(name)}: not shown: {escape(error)}</p>')
    out.append("</section>")
    return "\n".join(out)


def _metric_cells(metrics: dict, names: list[str]) -> str:
    """Table cells of `names` from one split's metrics, each with its 95% interval where there is one."""
    ci = metrics.get("ci95", {})
    cells = []
    for name in names:
        shown = _value(metrics.get(name))
        if interval := ci.get(name):
            shown += f' <span class="ci">[{interval[0]:.3g}, {interval[1]:.3g}]</span>'
        cells.append(f'<td class="num">{shown}</td>')
    return "".join(cells)


def _inputs(review: HeadReview) -> str:
    return ", ".join(f"{Path(i.store).name}:{i.pool}" for i in review.config.inputs)


def _head_section(review: HeadReview, data: ReportData) -> str:
    task = review.task
    out = [f'<section id="head-{escape(review.name)}" class="head"><h2>{escape(review.name)}</h2>']
    kind = "zero-shot (nothing trained)" if review.config.kind == "zero_shot" else "trained"
    out.append(
        f"<p>{escape(task.kind.name)} on <code>{escape(', '.join(task.columns))}</code>, {kind}; inputs "
        f"<code>{escape(_inputs(review))}</code>; {len(review.ids)} test videos. "
        f"<a href='#heads'>back to the table</a></p>"
    )
    if len(review.ids):
        if task.kind.chart == "roc":
            out.append(_img(figures.roc_and_pr(review.truth, review.scores, task.classes), "ROC and precision-recall"))
        elif task.kind.chart == "confusion":
            chart = figures.confusion(review.truth.astype(np.int64), review.scores.argmax(1), task.classes)
            out.append(_img(chart, "confusion matrix"))
        else:
            out.append(_img(figures.predicted_vs_true(review.truth, review.scores, task.classes), "predicted vs true"))
    if review.history:
        out.append(_img(figures.losses(review.history), "loss per epoch"))
    if review.sweep:
        out.append(sweep_leaderboard(review.sweep))
    if review.per_class:
        out.append(_per_class(review))
    why = f'<p class="muted">Ordered by how wrong the head was: {task.kind.worst}.</p>'
    out.append(f"<h3>Worst test videos</h3>{why}")
    for mistake in review.worst:
        out.append(_video(mistake, data.videos[mistake.vid], data))
    if not review.worst:
        out.append('<p class="muted">No test videos.</p>')
    out.append("</section>")
    return "\n".join(out)


def sweep_leaderboard(sweep: dict, shown: int = 10) -> str:
    """The sweep's configurations, best on val first, and its metric against each swept value."""
    metric, swept, rows = sweep["metric"], sweep["swept"], sweep["rows"]
    sign = 1 if sweep["lower_is_better"] else -1
    ranked = sorted(rows, key=lambda row: np.inf if row[metric] is None else sign * row[metric])
    columns = [*swept, metric, "epochs_run", "best_epoch", "seconds"]
    out = [
        f"<h3>Sweep: {len(rows)} configurations, kept by {escape(metric)}</h3>",
        f'<p class="muted">Trained in one pass over shared batches; the best {min(shown, len(rows))} on val.</p>',
        "<table><tr>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>",
    ]
    for row in ranked[:shown]:
        cells = "".join(f'<td class="num">{_value(row[c])}</td>' for c in columns)
        kept = ' class="kept"' if row["best"] else ""
        out.append(f"<tr{kept}>{cells}</tr>")
    out.append("</table>")
    out.append(_img(figures.sweep(rows, swept, metric), f"{metric} against each swept value"))
    return "\n".join(out)


def _per_class(review: HeadReview) -> str:
    with_cut = any(entry["threshold"] is not None for entry in review.per_class)  # a tuned cut per label
    out = ["<h3>Per class (test)</h3><table><tr><th>class</th><th>support</th><th>AP</th>"]
    out.append("<th>F1 at the tuned threshold</th><th>threshold</th></tr>" if with_cut else "<th>F1</th></tr>")
    for entry in review.per_class:
        cells = [entry["class"], entry["support"], entry["ap"], entry["f1"]] + (
            [entry["threshold"]] if with_cut else []
        )
        out.append("<tr>" + "".join(f'<td class="num">{_value(c)}</td>' for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _video(mistake: Mistake, facts: VideoFacts, data: ReportData) -> str:
    out = [f'<div class="video"><h4>{escape(mistake.vid)}</h4><p>{escape(mistake.what)}</p>']
    if facts.frames is not None:
        strip = figures.strip(facts.frames, facts.times, mistake.attention or None)
        what = "decoded frames" + (" and the head's attention over its rows" if mistake.attention else "")
        out.append(_img(strip, what))
    else:
        out.append(f'<p class="muted">no decoded frames in {escape(str(data.config.frames))}</p>')
    caption = facts.caption
    out.append(f"<p><b>caption</b>: {escape(caption) if caption else '<span class=muted>none</span>'}</p>")
    if data.has_transcripts:
        spoken = facts.transcript
        out.append(f"<p><b>transcript</b>: {escape(spoken) if spoken else '<span class=muted>none</span>'}</p>")
    out.append("</div>")
    return "\n".join(out)


def _img(uri: str, alt: str) -> str:
    return f'<p><img src="{uri}" alt="{escape(alt)}"></p>'


def _maps_section(data: ReportData) -> str:
    """Each configured store as a 2-D map (t-SNE of its pooled rows) with its kNN label probe."""
    config = data.config
    if not data.maps:
        return ""
    out = ['<section id="maps"><h2>Maps of the stores</h2>']
    out.append(
        f"<p>t-SNE of each video's mean row (L2-normalised; at most {config.map_limit} videos, a random subset "
        f"above that), coloured by <code>{escape(config.map_label or 'split')}</code>; red lines join duplicates "
        "that straddle train and test. Right: for each label, the share of its videos' 5 nearest neighbours "
        "(all videos, exact cosine) that carry it: high bars mean the store separates the labels before any "
        "head is trained.</p>"
    )
    out += [_map(found) for found in data.maps]
    out.append("</section>")
    return "\n".join(out)


def _map(found: StoreMap) -> str:
    if found.problem:
        return f"<p>{escape(found.store)}: {escape(found.problem)}</p>"
    uri = figures.embedding_map(found.xy, found.labels, found.splits, found.pairs, found.agreement, found.store)
    return _img(uri, f"map of {found.store}")


def _stores_section(data: ReportData) -> str:
    out = ['<section id="stores"><h2>Stores</h2><table><tr><th>store</th><th>videos</th><th>failures</th>']
    out.append("<th>rows</th><th>bytes per video</th><th>backbone</th><th>weights</th><th>preprocessing</th></tr>")
    for store in data.stores:
        cells = [
            f"<td><code>{escape(store.path)}</code></td>",
            f'<td class="num">{store.videos}</td>',
            f'<td class="num">{store.failures}</td>',
            f'<td class="num">{store.rows} <span class="ci">of {escape(str(store.row_shape))}</span></td>',
            f'<td class="num">{store.bytes_per_video:,}</td>',
            f"<td><code>{escape(_short_json(store.backbone))}</code></td>",
            f"<td>{escape(store.weights)}</td>",
            f"<td><code>{escape(_short_json(store.preprocessing))}</code></td>",
        ]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table><h3>Failures</h3>")
    if data.store_failures:
        out.append("<table><tr><th>store</th><th>video</th><th>reason</th></tr>")
        out += [
            f"<tr><td>{escape(s)}</td><td>{escape(v)}</td><td>{escape(w)}</td></tr>" for s, v, w in data.store_failures
        ]
        out.append("</table>")
    else:
        out.append('<p class="muted">None: every video made it into every store.</p>')
    out.append("</section>")
    return "\n".join(out)


def _short_json(value: object, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _run_section(data: ReportData) -> str:
    runs, folder = data.runs, data.config.runs
    out = ['<section id="run"><h2>Last run</h2>']
    if not runs:
        out.append(
            f'<p class="muted">No timings in {escape(folder)}: stages record them under <code>dvc repro</code>.</p>'
        )
        return "\n".join(out + ["</section>"])
    out.append(
        f'<p class="muted">Each stage as it last ran ({escape(runs[-1]["machine"])}); a stage DVC skipped keeps the '
        "time of the run that made its outputs. Videos per second counts the videos a stage computed, not "
        "those it reused.</p>"
    )
    out.append("<table><tr><th>stage</th><th>finished</th><th>seconds</th><th>videos computed</th>")
    out.append("<th>reused</th><th>videos per second</th></tr>")
    for run in runs:
        videos, seconds = run.get("videos"), float(run["seconds"])
        rate = f"{videos / seconds:.2f}" if videos and seconds > 0 else "—"
        out.append(
            f"<tr><td>{escape(run['stage'])}</td><td>{escape(run['finished'])}</td>"
            f'<td class="num">{seconds:.1f}</td><td class="num">{_value(videos)}</td>'
            f'<td class="num">{_value(run.get("reused"))}</td><td class="num">{rate}</td></tr>'
        )
    total = sum(float(r["seconds"]) for r in runs)
    out.append(f'<tr><th>all stages</th><td></td><td class="num">{total:.1f}</td><td></td><td></td><td></td></tr>')
    out.append("</table></section>")
    return "\n".join(out)
