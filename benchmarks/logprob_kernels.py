"""Log-probs + entropy of the sampled tokens: two chunked passes over the logits vs the fused one.

    python benchmarks/logprob_kernels.py [--tokens 8192] [--vocab 151936] [--repeats 5]

The update of an on-policy step needs both (log-probs for the loss, entropies for the metrics), and
so does the separate log-prob pass: the fused function computes one log-softmax per chunk instead
of two. Runs on the GPU when there is one (bf16 logits, as the trainer's), else on the CPU (fp32,
fewer tokens). Prints forward and forward+backward seconds and the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from core.algorithms.entropy import entropy_from_logits, logprobs_and_entropy_from_logits
from core.algorithms.logprobs import logprobs_from_logits


def separate(logits, labels):
    return logprobs_from_logits(logits, labels), entropy_from_logits(logits)


def timed(fn, logits, labels, backward: bool, repeats: int) -> float:
    def once():
        leaf = logits.detach().requires_grad_(backward)
        lp, h = fn(leaf, labels)
        if backward:
            lp.sum().backward()  # entropy_coef 0: only the log-probs carry a gradient
        return h

    once()
    if logits.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    if logits.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    tokens = args.tokens or (8192 if cuda else 512)
    logits = torch.randn(tokens, args.vocab, device=device, dtype=dtype)
    labels = torch.randint(0, args.vocab, (tokens,), device=device)
    print(f"{tokens} tokens x {args.vocab} vocab, {dtype} on {device}")
    print(f"{'pass':>18} {'separate s':>10} {'fused s':>8} {'fused/separate':>14}")
    for name, backward in (("forward", False), ("forward+backward", True)):
        a = timed(separate, logits, labels, backward, args.repeats)
        b = timed(logprobs_and_entropy_from_logits, logits, labels, backward, args.repeats)
        print(f"{name:>18} {a:>10.3f} {b:>8.3f} {b / a:>14.2f}")


if __name__ == "__main__":
    main()
