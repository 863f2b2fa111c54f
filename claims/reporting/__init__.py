"""Reporting: the claims-vs-measured table, claims.json, the HTML page and the figures (rendering only)."""
