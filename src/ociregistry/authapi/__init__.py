"""Authentication over HTTP: reading credentials from requests, the `WWW-Authenticate`
challenge, and the Docker token endpoint `/auth/token`."""
