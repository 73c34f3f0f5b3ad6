"""Response bodies of the audit log (defined in `bifrost.api`)."""

from bifrost.api.audit import AuditEventOut, AuditPage

__all__ = ["AuditEventOut", "AuditPage"]
