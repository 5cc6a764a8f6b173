"""Pure card builders: domain object in, Adaptive Card dict (v1.5) out, no I/O."""
