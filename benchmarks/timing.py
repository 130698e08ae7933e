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


def interleaved_rounds(calls, rounds, tokens, warmup=2, around=None):
    """Tokens/s of each call, one dict per round; each round times every call once, in turn, after `warmup` untimed
    calls of each. On a host shared with other tenants the speed drifts by 10-30% within minutes, and timing one
    engine's repeats after the other's would give that drift to the engine that ran last; in turn, it slows all
    alike. around: {label: (before, after)} run outside the timing (switching kernels, say)."""
    around = around or {}
    nothing = (lambda: None, lambda: None)
    for label, call in calls.items():
        before, after = around.get(label, nothing)
        before()
        for _ in range(warmup):
            call()
        after()
    results = []
    for _ in range(rounds):
        rates = {}
        for label, call in calls.items():
            before, after = around.get(label, nothing)
            before()
            started = time.perf_counter()
            call()
            rates[label] = tokens / (time.perf_counter() - started)
            after()
        results.append(rates)
    return results
