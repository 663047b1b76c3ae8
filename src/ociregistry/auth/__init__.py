"""Users, project groups, tokens and the access policy (`policy`), with no HTTP in sight."""
