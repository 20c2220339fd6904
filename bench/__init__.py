"""Benchmarks of rag-news (run ``python bench/run.py --help``)."""
