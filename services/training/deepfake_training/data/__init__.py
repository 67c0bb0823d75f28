"""Training data: cached and streamed faces, identities, samples and augmentation.

`datasets/` reads the datasets' layouts and `synthesis/` makes the fakes; this folder turns both into batches.
"""
