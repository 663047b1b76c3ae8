"""Manifests as data: media types, parsing and validation. Pure: no storage, no catalog (pushing
and fetching them is `ociregistry.content.manifests`)."""
