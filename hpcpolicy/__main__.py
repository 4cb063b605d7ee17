"""`python -m hpcpolicy`."""

from hpcpolicy.cli.main import run

run()
