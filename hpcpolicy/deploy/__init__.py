"""The publisher: plan, lock, publish a generation, rollback, GC."""
