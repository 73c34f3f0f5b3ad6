"""Small workflows with predictable behaviour, used to try Bifrost out and by its end-to-end tests."""
