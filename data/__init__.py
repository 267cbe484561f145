"""SCBench data: the Sample type, the dataset loader, offline generators, fixtures."""

from data.sample import MalformedRow, Sample, Turn, sample_from_row

__all__ = ["MalformedRow", "Sample", "Turn", "sample_from_row"]
