"""Using a model: the one-character stepper, the sampler, and scoring a text. Built on the core."""
