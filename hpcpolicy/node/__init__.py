"""The node side: install a verified generation (`sync`) and check the node (`doctor`).

A node imports only `generation` (manifest, verification, signatures, names), `errors` and
`fsutil`: it never needs the publisher's code nor the site file.
"""
