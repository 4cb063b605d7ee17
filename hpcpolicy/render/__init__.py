"""Pure renderers: validated model + directory snapshot + allocations -> {node path: bytes}.

One module per launcher; `tree` assembles them. No I/O here.
"""
