"""Helpers behind the `hubformers` command: training, data loaders, converters, benchmarks, pictures."""
