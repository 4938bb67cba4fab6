"""What every dataset family shares: raw and camera-JPG reading, atomic writes, the error of bad input,
the epoch-aware distributed sampler, and reading an optical flow's weight file (for the alignment steps)."""
