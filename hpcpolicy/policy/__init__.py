"""site.toml -> typed, validated model. Pure: no filesystem, directory or network access
beyond reading the site file itself (and keyrings it names) in `load`."""
