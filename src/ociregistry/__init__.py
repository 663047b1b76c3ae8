"""ociregistry: an OCI Distribution v1.1 registry with the console features of a cloud registry."""

__version__ = "0.1.0"
