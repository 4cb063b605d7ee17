"""Sub-ID allocation (pure, `allocate`) and its memory on shared storage (`ledger`)."""
