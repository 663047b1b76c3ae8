"""Registries, images, tags and the metadata database."""

from ociregistry.catalog.database import Database, migrate
from ociregistry.catalog.images import Images, ManifestRecord, Referrer
from ociregistry.catalog.registries import Registries, RegistryInfo

__all__ = [
    "Database",
    "Images",
    "ManifestRecord",
    "Referrer",
    "Registries",
    "RegistryInfo",
    "migrate",
]
