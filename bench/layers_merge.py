"""How a function's /opt is assembled from its layers: cost of the choices, measured.

Run by hand (never in the test suite):

    .venv/bin/python bench/layers_merge.py [--layers 3] [--files 2000] [--size 4096]

Builds ``--layers`` layer zips of ``--files`` files of ``--size`` bytes each (in nested
package directories, like a pip-installed site-packages), stores and unpacks them in a
temporary blob store, then times, with medians over a few rounds:

- ``merge (hard links)``: what Ember does once per distinct ordered layer list
  (``store/layer_trees.py``);
- ``cached lookup``: what every later environment with the same list pays;
- ``copy per environment``: ``shutil.copytree`` of every layer into one fresh directory,
  the cost a copy-per-start design would pay on every cold start;
- ``unpack (once per layer version)``: the blob store's extraction, paid at publish.

Nothing here touches the network.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import shutil
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

from ember.control.code import extract_zip
from ember.store.blobs import BlobStore
from ember.store.layer_trees import OptTrees

ROUNDS = 5


def layer_zip(index: int, files: int, size: int) -> bytes:
    buffer = io.BytesIO()
    payload = bytes(size)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for number in range(files):
            # the first tenth of the paths is shared by every layer (later layers win)
            owner = 0 if number < files // 10 else index
            name = f"python/pkg{number % 40}/mod{owner}_{number}.py"
            archive.writestr(name, payload)
    return buffer.getvalue()


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.1f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ember-layers-bench-") as scratch:
        root = Path(scratch)
        blobs = BlobStore(root / "blobs", extract_zip)
        shas: list[str] = []
        unpack: list[float] = []
        for index in range(args.layers):
            data = layer_zip(index, args.files, args.size)
            sha = hashlib.sha256(data).hexdigest()
            await blobs.put_zip(sha, data)
            started = time.perf_counter()
            await blobs.unpacked(sha)
            unpack.append(time.perf_counter() - started)
            shas.append(sha)
        sources = [await blobs.unpacked(sha) for sha in shas]

        merges, copies, lookups = [], [], []
        for round_ in range(ROUNDS):
            trees = OptTrees(root / f"opt{round_}", blobs)
            started = time.perf_counter()
            await trees.tree(tuple(shas))
            merges.append(time.perf_counter() - started)
            started = time.perf_counter()
            await trees.tree(tuple(shas))
            lookups.append(time.perf_counter() - started)
            target = root / f"copy{round_}"
            started = time.perf_counter()
            target.mkdir()
            for source in sources:
                shutil.copytree(source, target, dirs_exist_ok=True, symlinks=True)
            copies.append(time.perf_counter() - started)
        total_files = args.layers * args.files
        print(f"{args.layers} layers x {args.files} files x {args.size} B ({total_files} files)")
        print(f"  unpack (once per layer version)  {median_ms(unpack)} per layer")
        print(f"  merge (hard links, once per list) {median_ms(merges)}")
        print(f"  cached lookup (every later start) {median_ms(lookups)}")
        print(f"  copy per environment             {median_ms(copies)}")


if __name__ == "__main__":
    asyncio.run(main())
