"""Response bodies of browser sessions (defined in `bifrost.api`)."""

from bifrost.api.sessions import SessionOut

__all__ = ["SessionOut"]
