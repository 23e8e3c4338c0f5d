"""Developer and operator tools: the local stack, key and desk administration, benchmarks."""
