"""Running benchmarks: sessions over a server, run directories, progress display, result tables."""
