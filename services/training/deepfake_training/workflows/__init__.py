"""Workflows: one training run end to end, the reference model, continual learning, search, exports."""
