"""Hardware targets (CPU, GPU, RPAccel-like accelerator) and the plugin registry. Not built
yet: see the targets issue."""
