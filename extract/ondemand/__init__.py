"""Stores made on demand, outside `dvc repro`: `run` (decode and extract in one process), and stores
for new videos from a store's recipe (`predict`, `neighbours --video`)."""
