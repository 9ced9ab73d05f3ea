"""Enrichment: adds profile data and a verified email to each discovered lead."""
