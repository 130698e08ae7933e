"""The float32 products of c3's layers on its own kernels and on oneDNN's sgemm, beside PyTorch, in one process.

    pip install ".[onednn]"        # onednn-cpu-gomp: oneDNN 3.2 on GNU OpenMP
    python benchmarks/gemm_backends.py [--threads 2]

For each shape [rows, in] x [in, out] (SmolLM2-135M's and d512's projections, and 1024^3) it prints GFLOP/s of
c3's own kernels (broadcast_gemm and Eigen), of c3 with oneDNN loaded (python/c3/_onednn.py), and of
torch.nn.functional.linear on the same threads, then the ratios of oneDNN to the other two. The best of five
repeats after a warm-up each; the rate of the fastest engine is the run's measured GEMM ceiling.
"""
from __future__ import annotations

import argparse
import time

import torch

import c3

SHAPES = [(1024, 576, 1536), (1024, 1536, 576), (1024, 576, 576), (128, 576, 1536), (1024, 512, 2048),
          (1024, 2048, 512), (1024, 768, 2048), (256, 512, 512), (1024, 1024, 1024)]


def torch_rate(rows: int, size: int, out: int, repeats: int = 5) -> float:
    x, w = torch.full((rows, size), 0.5), torch.full((out, size), 0.25)
    torch.nn.functional.linear(x, w)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.nn.functional.linear(x, w)
        best = min(best, time.perf_counter() - start)
    return 2.0 * rows * size * out / best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    c3.set_num_threads(args.threads)
    onednn = c3.onednn_in_use() or c3.load_onednn()
    print(f"{args.threads} threads; {onednn}; PyTorch {torch.__version__}")
    print(f"{'rows x in x out':>22}  {'c3 own':>8}  {'oneDNN':>8}  {'PyTorch':>8}  GFLOP/s   oneDNN / own, / PyTorch")
    for rows, size, out in SHAPES:
        c3.unload_onednn()
        own = c3._core.measure_gemm_rate(size, 5, rows, out)
        c3.load_onednn()
        with_onednn = c3._core.measure_gemm_rate(size, 5, rows, out)
        reference = torch_rate(rows, size, out)
        print(f"{rows:>6} x {size:>5} x {out:>5}  {own / 1e9:8.1f}  {with_onednn / 1e9:8.1f}  {reference / 1e9:8.1f}"
              f"            {with_onednn / own:5.2f}x  {with_onednn / reference:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
