"""The OCI Distribution v1.1 API under /v2. One module per resource; each handler is thin and
calls into blobstore/, manifests/, catalog/ and auth/."""

from starlette.routing import Route

from ociregistry.v2 import base, blobs, listing, manifests, referrers, uploads

NAME = "/v2/{name:path}"

routes = [
    Route("/v2/", base.api_version_check, methods=["GET"]),
    Route("/v2/_catalog", listing.list_repositories, methods=["GET"]),
    Route(f"{NAME}/blobs/uploads/", uploads.start_upload, methods=["POST"]),
    Route(f"{NAME}/blobs/uploads", uploads.start_upload, methods=["POST"]),
    Route(f"{NAME}/blobs/uploads/{{upload_id}}", uploads.upload_status, methods=["GET"]),
    Route(f"{NAME}/blobs/uploads/{{upload_id}}", uploads.upload_chunk, methods=["PATCH"]),
    Route(f"{NAME}/blobs/uploads/{{upload_id}}", uploads.finish_upload, methods=["PUT"]),
    Route(f"{NAME}/blobs/uploads/{{upload_id}}", uploads.cancel_upload, methods=["DELETE"]),
    # HEAD before GET: Starlette lets a GET route answer HEAD too.
    Route(f"{NAME}/blobs/{{digest}}", blobs.head_blob, methods=["HEAD"]),
    Route(f"{NAME}/blobs/{{digest}}", blobs.get_blob, methods=["GET"]),
    Route(f"{NAME}/blobs/{{digest}}", blobs.delete_blob, methods=["DELETE"]),
    Route(f"{NAME}/manifests/{{reference}}", manifests.head_manifest, methods=["HEAD"]),
    Route(f"{NAME}/manifests/{{reference}}", manifests.get_manifest, methods=["GET"]),
    Route(f"{NAME}/manifests/{{reference}}", manifests.put_manifest, methods=["PUT"]),
    Route(f"{NAME}/manifests/{{reference}}", manifests.delete_manifest, methods=["DELETE"]),
    Route(f"{NAME}/tags/list", listing.list_tags, methods=["GET"]),
    Route(f"{NAME}/referrers/{{digest}}", referrers.list_referrers, methods=["GET"]),
]
