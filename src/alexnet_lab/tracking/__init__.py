"""Where a run's numbers go: the loggers a config asks for, and who a W&B run is."""
