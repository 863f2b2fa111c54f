"""Storage primitives under everything else: atomic writes, inter-process locks, leases across
machines, the cache root."""
