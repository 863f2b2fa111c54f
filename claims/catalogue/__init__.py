"""The claims catalogue: the language of checks (checks), the paper's findings written in it (paper),
their evaluation on the measured series (evaluate) and Holm's adjustment across checks (multiplicity)."""
