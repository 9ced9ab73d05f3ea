"""Outreach: campaigns, accounts, workflow timers, pacing and send-time compliance."""
