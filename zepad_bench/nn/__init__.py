"""Neural-network building blocks: backbones, encoders, heads, PGD, tuning, SSL, checkpoints."""
