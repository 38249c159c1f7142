"""`python -m reelfeat COMMAND`, the same as the installed `reelfeat` command."""

from reelfeat.cli import console

console()
