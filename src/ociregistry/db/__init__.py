"""The metadata database, on the ground floor: the engine (`database`), the declarative base and
the shared models (`models`), and dialect helpers (`sql`). It imports nothing of the registry's
domains, so every package above (auth, catalog, blobstore, content) can use it."""
