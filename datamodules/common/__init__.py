"""What every dataset family shares: raw and camera-JPG reading, atomic writes, the error of bad input,
and the epoch-aware distributed sampler."""
