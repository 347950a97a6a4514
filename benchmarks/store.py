"""Benchmark: write and read throughput of the embedding store against bare pyarrow.parquet.

One representation of n = 200,000 rows × d = 512 float32 (409.6 MB of embeddings, int64 ids)
with the store's default shard size. In one run, interleaved round by round (best of 3):

1. Write: ``repalign.store.write_representation`` (checks, atomic shards, fsync, sha256 of
   every shard, manifest) against ``pyarrow.parquet.write_table`` of the same shards (same
   schema and row-group size) and nothing else.
2. Read: the streaming reader, ``Representation.batches()`` and ``Store.blocks([name])`` with
   their default block of 65,536 rows, against bare pyarrow reads of the same files: every
   shard through ``ParquetFile.iter_batches(batch_size=65536)`` and through ``read_table``,
   each batch or table turned into an (ids, float32 (rows, d) array) pair as the reader does.
   Every read path touches the same data (one float32 sum per block) so that no path skips
   work another does. The files are in the page cache: these are decode rates, not disk rates.
3. Peak memory of one full pass of each read path, each in a fresh Python process: the
   tracemalloc peak (numpy arrays and Python objects), the peak of Arrow's memory pool (the
   decoded Parquet data, which tracemalloc does not see), and the growth of the peak RSS
   (VmHWM in /proc/self/status) over the pass.

Throughput is rows/s and MB/s of embeddings (n·d·4 bytes, 1 MB = 10⁶ bytes); the ratios
(repalign time / bare time) are the result, the seconds are context. Progress goes to stderr,
the markdown report to stdout.

Run from the repository root:

    .venv/bin/python benchmarks/store.py
"""

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from machine import cpu_model, total_memory_gib

import repalign
from repalign.store import open_store, write_representation
from repalign.store.format import default_shard_rows, schema

SEED = 20251
ROWS = 200_000
DIM = 512
REPEATS = 3
BATCH_ROWS = 65_536  # the reader's default block, used by the bare streaming read too
NAME = "bench.embeddings"
READ_PATHS = ("batches", "blocks", "bare iter_batches", "bare read_table")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--peak":
        print(json.dumps(peak_of_one_pass(Path(sys.argv[2]), sys.argv[3])))
        return
    print_machine()
    ids, embeddings = make_representation()
    folder = Path(tempfile.mkdtemp(prefix="repalign-bench-store-"))
    try:
        write_seconds, store = time_writes(folder, ids, embeddings)
        del embeddings
        read_seconds = time_reads(store)
        peaks = {path: measure_peak(store, path) for path in READ_PATHS}
    finally:
        shutil.rmtree(folder)
    print_throughput_table(write_seconds, read_seconds)
    print_memory_table(peaks)


def log(message):
    print(message, file=sys.stderr, flush=True)


def print_machine():
    print("### Machine\n")
    print(f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}")
    from report import command_line

    print(f"- command: {command_line()}")
    print(
        f"- CPU: {cpu_model()}, nproc {len(os.sched_getaffinity(0))}, "
        f"memory {total_memory_gib():.1f} GiB, {platform.machine()}"
    )
    print(
        f"- versions: Python {platform.python_version()}, numpy {np.__version__}, "
        f"pyarrow {pa.__version__} (cpu_count {pa.cpu_count()}, io_thread_count "
        f"{pa.io_thread_count()}, memory pool {pa.default_memory_pool().backend_name}), "
        f"repalign {repalign.__version__}"
    )
    print(
        f"- data: seed {SEED}, {ROWS:,} rows × {DIM} float32 (standard normal), int64 ids "
        f"0..n−1, {default_shard_rows(DIM):,} rows per shard (the default), best of "
        f"{REPEATS} interleaved rounds\n"
    )


def make_representation():
    rng = np.random.default_rng(SEED)
    return np.arange(ROWS, dtype=np.int64), rng.standard_normal((ROWS, DIM), dtype=np.float32)


def time_writes(folder, ids, embeddings):
    """Best seconds of write_representation and of bare write_table of the same shards.

    Each write goes to an empty folder: removing the previous round's output is not timed.
    Returns the seconds and the store that write_representation wrote.
    """
    writes = {
        "write_representation": lambda out: write_representation(out, NAME, ids, embeddings),
        "bare write_table": lambda out: write_bare_shards(out, ids, embeddings),
    }
    seconds = dict.fromkeys(writes, float("inf"))
    for round_number in range(REPEATS):
        log(f"write: round {round_number + 1} of {REPEATS}")
        for number, (name, write) in enumerate(writes.items()):
            out = folder / f"write-{number}"
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            write(out)
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    return seconds, folder / "write-0"


def write_bare_shards(folder, ids, embeddings):
    """The writer's shards (schema, rows per shard, row groups) with pyarrow alone."""
    folder.mkdir()
    shard_rows = default_shard_rows(DIM)
    for number, start in enumerate(range(0, ROWS, shard_rows)):
        rows = slice(start, start + shard_rows)
        table = pa.Table.from_arrays(
            [
                pa.array(ids[rows]),
                pa.FixedSizeListArray.from_arrays(pa.array(embeddings[rows].ravel()), DIM),
            ],
            schema=schema(DIM, "int64"),
        )
        pq.write_table(
            table,
            folder / f"part-{number:05d}.parquet",
            row_group_size=min(table.num_rows, 65536),
            write_statistics=False,
        )


def time_reads(store):
    """Best seconds of each of READ_PATHS, interleaved round by round."""
    seconds = dict.fromkeys(READ_PATHS, float("inf"))
    for round_number in range(REPEATS):
        log(f"read: round {round_number + 1} of {REPEATS}")
        for path in READ_PATHS:
            start = time.perf_counter()
            read_pass(store, path)
            seconds[path] = min(seconds[path], time.perf_counter() - start)
    return seconds


def read_pass(store, path):
    """Read every row of the representation by one of READ_PATHS; returns the rows read."""
    rows = 0
    for ids, values in read_blocks(store, path):
        values.sum(dtype=np.float32)  # touch every value, as a consumer would
        rows += len(ids)
    if rows != ROWS:
        raise RuntimeError(f"{path} read {rows} rows, expected {ROWS}")
    return rows


def read_blocks(store, path):
    """(ids, float32 (rows, DIM) array) blocks of the representation, by ``path``."""
    if path == "batches":
        yield from open_store(store)[NAME].batches()
    elif path == "blocks":
        for ids, (values,) in open_store(store).blocks([NAME]):
            yield ids, values
    else:
        for shard in open_store(store)[NAME].shard_paths():
            if path == "bare iter_batches":
                parts = pq.ParquetFile(shard).iter_batches(batch_size=BATCH_ROWS)
            else:
                parts = [pq.read_table(shard)]
            for part in parts:
                yield bare_arrays(part)


def bare_arrays(part):
    """ids and the (rows, DIM) float32 view of a record batch or a table."""
    embedding = part.column("embedding")
    if isinstance(embedding, pa.ChunkedArray):
        embedding = embedding.combine_chunks()
    values = embedding.flatten().to_numpy().reshape(-1, DIM)
    return part.column("sample_id").to_numpy(), values


def measure_peak(store, path):
    """Peak memory of one pass of ``path``, measured in a fresh Python process."""
    log(f"peak memory: {path}")
    command = [sys.executable, __file__, "--peak", str(store), path]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def peak_of_one_pass(store, path):
    """tracemalloc peak, Arrow pool peak and peak-RSS growth of one read pass (in MiB)."""
    rss_before = peak_rss_kib()
    tracemalloc.start()
    read_pass(store, path)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "traced_mib": traced_peak / 2**20,
        "arrow_mib": pa.default_memory_pool().max_memory() / 2**20,
        "rss_growth_mib": (peak_rss_kib() - rss_before) / 2**10,
    }


def peak_rss_kib():
    """This process's peak resident set (VmHWM). Not ``getrusage``'s ru_maxrss: on Linux that
    survives exec, so a child started by a large parent reports the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/status has no VmHWM line")


def print_throughput_table(write_seconds, read_seconds):
    megabytes = ROWS * DIM * 4 / 1e6
    print(f"### Throughput ({ROWS:,} × {DIM} float32, {megabytes:.1f} MB of embeddings)\n")
    print("| operation | path | seconds (best of 3) | rows/s | MB/s | time / bare reference |")
    print("|:---|:---|---:|---:|---:|---:|")
    rows = [
        ("write", name, s, "bare write_table", write_seconds) for name, s in write_seconds.items()
    ]
    rows += [
        ("read", name, s, "bare iter_batches", read_seconds) for name, s in read_seconds.items()
    ]
    for operation, name, seconds, reference, timings in rows:
        ratio = "(reference)" if name == reference else f"{seconds / timings[reference]:.2f}"
        print(
            f"| {operation} | {name} | {seconds:.3f} | {ROWS / seconds:,.0f} "
            f"| {megabytes / seconds:,.0f} | {ratio} |"
        )
    print()


def print_memory_table(peaks):
    print("### Peak memory of one read pass (fresh process each)\n")
    print("| path | tracemalloc peak (MiB) | Arrow pool peak (MiB) | peak RSS growth (MiB) |")
    print("|:---|---:|---:|---:|")
    for path, peak in peaks.items():
        print(
            f"| {path} | {peak['traced_mib']:.1f} | {peak['arrow_mib']:.1f} "
            f"| {peak['rss_growth_mib']:.1f} |"
        )
    print()


if __name__ == "__main__":
    main()
