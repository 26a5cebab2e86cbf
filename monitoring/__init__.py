"""Monitoring and debugging: reports, drawings, replay (time travel) and routing evaluation."""
