"""The registry's parts, built once per worker process and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass

from ociregistry.auth.policy import AccessPolicy
from ociregistry.blobstore import BlobStore, FilesystemDriver, Uploads
from ociregistry.catalog import Database, Images, Registries
from ociregistry.config import Settings
from ociregistry.manifests.service import Manifests


@dataclass
class Services:
    settings: Settings
    db: Database
    blobs: BlobStore
    uploads: Uploads
    images: Images
    registries: Registries
    manifests: Manifests
    policy: AccessPolicy

    @classmethod
    def build(cls, settings: Settings) -> Services:
        db = Database(settings.resolved_database_url)
        driver = FilesystemDriver(settings.storage_path)
        blobs = BlobStore(driver)
        images = Images(db)
        return cls(
            settings=settings,
            db=db,
            blobs=blobs,
            uploads=Uploads(driver, expiry_seconds=settings.upload_expiry_seconds),
            images=images,
            registries=Registries(db),
            manifests=Manifests(images, blobs),
            policy=AccessPolicy(),
        )

    async def close(self) -> None:
        await self.db.dispose()
