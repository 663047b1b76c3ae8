"""Users, tokens and the access policy."""

from ociregistry.auth.policy import ANONYMOUS, AccessPolicy, Action, Principal

__all__ = ["ANONYMOUS", "AccessPolicy", "Action", "Principal"]
