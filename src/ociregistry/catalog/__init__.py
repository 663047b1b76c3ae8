"""Registries, images, tags, pull counts and the lists the console and the API show
(`registries`, `images`, `pulls`, `listings`). The database they live in is `ociregistry.db`."""
