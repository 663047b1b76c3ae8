"""The web console: a small client-side app (static files, no build step) served under
/console/, over the same /api/v1 routes and access policy as every other client."""
