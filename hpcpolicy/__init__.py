"""hpcpolicy: one reviewed site.toml -> the container policy of every HPC node.

Data flow (each package imports only those listed before it; tests/test_layers.py checks it):
policy -> directory -> images -> subid -> render -> generation -> deploy / node -> audit -> cli
"""

__version__ = "0.1.0"
