"""Messaging: writes hook-based invite notes, messages, emails and comments, and runs the Messaging Lab."""
