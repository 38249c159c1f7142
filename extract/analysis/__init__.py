"""What feature stores say about a dataset: duplicates, split leakage, nearest neighbours."""
