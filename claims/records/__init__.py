"""Records: one checkpoint's attribution and ablations computed (compute, ablations), the digest of
their code (provenance), where they are stored and how workers share them (store, scheduling), the
measurements cached from them, merges of caches and hub streaming within a disk budget."""
