"""The HTML report: one self-contained page (`data/report/index.html`) of what a `dvc repro` made.

- every head's test metrics with 95% intervals, heads of the same task and target side by side
  (zero-shot heads marked as the baseline), each linking to its section;
- per head: ROC / precision-recall, confusion or predicted-vs-true plots, the loss per epoch, the
  per-class table, and the worst test videos, each with a strip of its decoded frames, its caption,
  its transcript and, for heads that pool with attention, the attention weights over the strip;
- per store: videos, failures with their reasons, rows, bytes per video, backbone, weights and
  preprocessing;
- the time each stage of the last run took (`extract.core.runlog`) and its videos per second.

Images are PNG data URIs and the styles are inline: the page needs no network, no script and no
other file. `config.py` reads the `report` params, `review.py` reads what `evaluate` scored, `figures.py`
draws, `page.py` writes the HTML.
"""
