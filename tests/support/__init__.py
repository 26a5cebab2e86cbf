"""Test helpers: local servers and scripts the tests start."""
