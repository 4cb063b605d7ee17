"""`hpcpolicy audit`: who may run which image, why, and what on a node enforces it.

`decide` is pure (policy + directory snapshot + observed file states in, decisions out),
`observe` is the only part that touches the file system (stat of collection paths), and
`report` renders decisions as a table, CSV, JSON or a self-contained HTML page.
"""
