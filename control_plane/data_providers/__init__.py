"""Data providers: the options of a choice, computed by the workspace's code in a runner."""
