"""Plumbing at the bottom floor: the command-line frame, params and typed configs, settings, errors,
atomic files, recipes, determinism, the split and stage times. Imports nothing above it."""
