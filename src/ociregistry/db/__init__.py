"""The metadata database, on the ground floor: the engine (`database`), where SQLite's write
transactions run (`sqlite_writes`: on the event loop, or one writer thread), the declarative
base and the shared models (`models`), dialect helpers (`sql`), and the row locks a write takes
first (`locks`), in the one lock order every write follows on PostgreSQL ("Lock order" in
`database`). It imports nothing of the registry's domains, so every package above (auth,
catalog, blobstore, content) can use it."""
