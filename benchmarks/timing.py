"""Timing shared by the side-by-side benchmark scripts."""
import statistics
import time


def median_time(function, repeats=3, warmup=1):
    """Median wall time of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)
