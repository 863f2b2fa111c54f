"""The paper's findings as pytest claims, and the replication report they produce."""
