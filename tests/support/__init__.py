"""What the tests share: the server harness (`server`, `inprocess`, `pgcluster`, `s3gateway`),
OCI content and push helpers over HTTP (`oci`), images built on disk for real clients
(`images`), our conformance suite run as a child process (`conformance`) and waiting for a
server to reach a state (`waiting`). `tests/conftest.py` puts `tests/` on `sys.path`, so tests
import `support.…`, and holds the shared fixtures (the session's server, a PostgreSQL cluster
per module, `database_url` for both databases)."""
