"""Video: personalised videos per lead, rendered by a studio that calls back with a signed webhook."""
