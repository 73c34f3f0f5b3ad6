"""The contract between Bifrost's runner and its control plane, shared by both: the event protocol and the
template's messages, workspace paths and revisions, parameter validation, storable values, masking of secrets,
static discovery, prepared files and the S3 client set-up.

Workflow authors never need anything here: what they use is `bifrost` itself. This package changes whenever the
runner and the control plane change together, without notice.
"""
