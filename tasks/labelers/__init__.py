"""Step labellers: each turns nodes of a rollout tree into step_labels rows."""
