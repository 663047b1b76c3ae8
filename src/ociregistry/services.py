"""The registry's parts, built once per worker process and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass

from ociregistry.auth.accounts import Accounts
from ociregistry.auth.groups import Groups
from ociregistry.auth.policy import AccessPolicy
from ociregistry.auth.throttle import LoginThrottle
from ociregistry.auth.tokens import TokenSigner
from ociregistry.blobstore import BlobStore, create_driver
from ociregistry.blobstore.factory import close_driver, observer_from_environment
from ociregistry.blobstore.uploads import Uploads
from ociregistry.catalog.audit import AuditLog
from ociregistry.catalog.images import Images
from ociregistry.catalog.listings import Listings
from ociregistry.catalog.pulls import PullCounter
from ociregistry.catalog.registries import Registries
from ociregistry.catalog.retention_plans import Retention
from ociregistry.config import Settings
from ociregistry.content.blobpushes import BlobPushes
from ociregistry.content.manifests import Manifests
from ociregistry.content.mounts import Mounts
from ociregistry.db.database import Database
from ociregistry.ops.metrics import storage_observer


@dataclass
class Services:
    settings: Settings
    db: Database
    blobs: BlobStore
    uploads: Uploads
    blob_pushes: BlobPushes
    images: Images
    registries: Registries
    manifests: Manifests
    accounts: Accounts
    groups: Groups
    throttle: LoginThrottle
    signer: TokenSigner
    policy: AccessPolicy
    pulls: PullCounter
    listings: Listings
    mounts: Mounts
    audit: AuditLog
    retention: Retention

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        """Everything a worker needs; the schema and the signing key exist already (`serve`
        prepares them before starting workers)."""
        db = Database(settings.resolved_database_url)
        driver = create_driver(
            settings.storage,
            settings.storage_path,
            observer=storage_observer(settings.storage, then=observer_from_environment()),
            settings=settings,
        )
        blobs = BlobStore(driver)
        images = Images(db)
        policy = AccessPolicy(db, anonymous_access=settings.anonymous_access)
        uploads = Uploads(db, driver, expiry_seconds=settings.upload_expiry_seconds)
        audit = AuditLog(db, retention_days=settings.audit_log_retention_days)
        return cls(
            settings=settings,
            db=db,
            blobs=blobs,
            uploads=uploads,
            blob_pushes=BlobPushes(uploads, images),
            images=images,
            registries=Registries(db, default_quota_bytes=settings.default_registry_quota_bytes),
            manifests=Manifests(images, blobs),
            accounts=Accounts(db),
            groups=Groups(db),
            throttle=LoginThrottle(
                db,
                max_failures=settings.login_max_failures,
                block_seconds=settings.login_block_seconds,
            ),
            signer=await TokenSigner.load(
                db, service=settings.token_service, ttl_seconds=settings.token_ttl_seconds
            ),
            policy=policy,
            pulls=PullCounter(db, enabled=settings.pull_counting),
            listings=Listings(db),
            mounts=Mounts(images, blobs, policy),
            audit=audit,
            retention=Retention(db, audit, stale_seconds=settings.job_lease_seconds),
        )

    async def close(self) -> None:
        await self.images.close()
        await self.registries.close()
        await self.db.dispose()
        await close_driver(self.blobs.driver)
