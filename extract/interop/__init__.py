"""Feature files in other tools' formats: PaddleVideo's feature_files, NumPy files, Parquet shards."""
