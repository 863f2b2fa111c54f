"""Registers the lpi-claims pytest plugin (claims/plugin.py: its options, markers and hooks) for every run here."""

pytest_plugins = ["claims.plugin"]
