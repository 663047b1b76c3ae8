"""Content-addressed blob storage and uploads, over a swappable storage driver."""

from ociregistry.blobstore.digest import Digest
from ociregistry.blobstore.driver import FileInfo, FileWriter, PathNotFound, StorageDriver
from ociregistry.blobstore.filesystem import FilesystemDriver
from ociregistry.blobstore.store import BlobStore
from ociregistry.blobstore.uploads import Uploads, UploadSession, upload_range

__all__ = [
    "BlobStore",
    "Digest",
    "FileInfo",
    "FileWriter",
    "FilesystemDriver",
    "PathNotFound",
    "StorageDriver",
    "UploadSession",
    "Uploads",
    "upload_range",
]
