"""The command line of `python -m extract`: one module per group of commands, each registering its
parsers and running its work. A module imports the plumbing alone at its top and loads what a command
runs when it runs, and `extract/__main__.py` imports only the group of the command given: a stage's
process loads what it runs, which is what its DVC deps list (`tests/test_dvc.py` checks)."""
