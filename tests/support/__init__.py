"""What the tests share: the server harness (`server`, `inprocess`, `pgcluster`, `s3gateway`),
OCI content and push helpers over HTTP (`oci`), and images built on disk for real clients
(`images`). `tests/conftest.py` puts `tests/` on `sys.path`, so tests import `support.…`."""
