"""One module per site.toml section (Spack's schema-per-section): fields, defaults, local rules.

Each module offers `parse(raw, out, ...)` returning its model part (None when the section has a
problem, which is then already recorded) and, where needed, checks across its own keys. Rules
that span sections live in `cross`.
"""
