"""Outreach's pure logic (no I/O, no clock reads): workflow graphs, schedules, pacing, compliance."""
