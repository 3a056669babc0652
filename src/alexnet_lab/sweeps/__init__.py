"""What spans the jobs of a sweep: its summary, seed aggregate, lock and fingerprint, and W&B
report."""
