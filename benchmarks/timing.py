"""Timing shared by the side-by-side benchmark scripts."""
import statistics
import time


def median_time(function, repeats=3, warmup=1, clock=time.perf_counter):
    """Median time of `repeats` calls after `warmup` untimed ones: wall time, or another clock such as
    time.process_time (the process's CPU time: on one thread, what the work costs on a machine shared with
    other jobs)."""
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        started = clock()
        function()
        samples.append(clock() - started)
    return statistics.median(samples)
