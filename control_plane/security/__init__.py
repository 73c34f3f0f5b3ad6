"""Who may do what, and the secrets they keep."""
