"""The on-disk contract between publisher and node: manifest, verification, signatures."""
