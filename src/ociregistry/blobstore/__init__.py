"""Content-addressed blob storage and uploads, over a swappable storage driver."""

from ociregistry.blobstore.base import CheckedDriver
from ociregistry.blobstore.digest import Digest
from ociregistry.blobstore.driver import (
    FileInfo,
    PathNotFound,
    StorageDriver,
    StorageError,
    StorageFull,
    StorageUnavailable,
)
from ociregistry.blobstore.factory import create_driver
from ociregistry.blobstore.filesystem import FilesystemDriver
from ociregistry.blobstore.memory import MemoryDriver
from ociregistry.blobstore.store import BlobStore

__all__ = [
    "BlobStore",
    "CheckedDriver",
    "Digest",
    "FileInfo",
    "FilesystemDriver",
    "MemoryDriver",
    "PathNotFound",
    "StorageDriver",
    "StorageError",
    "StorageFull",
    "StorageUnavailable",
    "create_driver",
]
