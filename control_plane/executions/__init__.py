"""Executions: their data, how runner events move them, what a runner receives, and the service that starts
and reads them."""
