"""Examples of downstream systems (not part of the services)."""
