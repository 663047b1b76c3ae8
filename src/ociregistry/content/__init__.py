"""Registry content: the workflows that join blob storage and the catalog (manifest push and
fetch, the referrers index, finishing an upload and linking its blob, cross-repository mount,
garbage collection). It sits above `catalog/` and `blobstore/`, which know nothing of each other."""
