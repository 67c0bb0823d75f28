"""Learning: the two training phases, their losses, adversarial steps, checkpoints, devices and many processes."""
