"""Policy backends behind one interface (tasks.policies.base.Policy)."""
