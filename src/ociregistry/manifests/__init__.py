"""Manifests: media types, parsing and validation, storage, tags and referrers."""
