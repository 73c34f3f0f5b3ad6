"""The `bifrost` command."""
