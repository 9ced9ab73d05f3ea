"""Projection: the read side. Turns the event log into timelines, lead state, campaign summaries and result tables."""
