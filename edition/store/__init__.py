"""What the house remembers about its customers across runs (suppressions, and the
records the feedback stage writes)."""
