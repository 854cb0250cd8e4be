#!/usr/bin/env python3
"""Deterministic benchmark tree: 20,000 files, exactly 1 GiB, half text-like (compressible), half random.

usage: gen_tree.py <dir> [total_bytes] [files]
"""
import os
import random
import sys

root = sys.argv[1]
total = int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 30
count = int(sys.argv[3]) if len(sys.argv) > 3 else 20_000
rng = random.Random(20261127)

# A 4 MiB pseudo-text corpus; compressible files are slices of it (deflate only sees a 32 KiB window,
# so reuse across files does not flatter the ratio).
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(5000)]
parts, size = [], 0
while size < 4 << 20:
    line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) + "\n"
    parts.append(line)
    size += len(line)
corpus = "".join(parts).encode()

large = count // 200  # 0.5% of files carry the bulk, like build outputs next to sources
small_sizes = [rng.randint(1024, 64 * 1024) for _ in range(count - large)]
rest = total - sum(small_sizes)
assert rest > large, "total too small for the file count"
large_sizes = [rest // large] * large
large_sizes[-1] += rest - sum(large_sizes)
sizes = small_sizes + large_sizes
rng.shuffle(sizes)

for i, n in enumerate(sizes):
    d = os.path.join(root, f"d{i % 50:02d}", f"s{(i // 50) % 8}")
    os.makedirs(d, exist_ok=True)
    if i % 2 == 0:
        off = rng.randrange(len(corpus))
        data = (corpus[off:] + corpus) * (n // len(corpus) + 1)
        data = data[:n]
    else:
        data = rng.randbytes(n)
    with open(os.path.join(d, f"f{i:05d}.{'txt' if i % 2 == 0 else 'bin'}"), "wb") as f:
        f.write(data)
