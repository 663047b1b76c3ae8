"""Registries, images, tags and the metadata database (`database`, `models`, `registries`,
`images`). Import from the modules: this package's models are shared with `auth`."""
