"""One job's folder: whether it finished, what it is called, how to run it again, resume."""
