"""Stream families (permuted, rotated, split) and the scenario taxonomy (GG, GNs, GNu, NNs)."""
