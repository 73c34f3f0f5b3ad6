"""Forms: a workflow's parameters refined into fields a person fills in, checked, rendered and submitted."""
