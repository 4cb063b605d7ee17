"""The publisher: plan (directory + allocation + render), lock, publish a generation, rollback, GC."""
