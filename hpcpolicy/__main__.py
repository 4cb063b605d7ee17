"""`python -m hpcpolicy`."""

from hpcpolicy.cli.entry import run

run()
