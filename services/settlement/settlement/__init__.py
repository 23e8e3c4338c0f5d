"""Settlement: obligations, SSIs, instructions to the depository and their outcome."""
