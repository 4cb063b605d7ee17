"""containers-policy.json scope precedence, shared by the renderer and the audit. Pure.

Image references themselves are parsed by `policy.reference` (the site file validates them).
"""
