"""The pipeline's stages, each a small command `dvc repro` runs: prepare (the manifest), decode,
features and train-encoder."""
