"""The Python client of examples/bench_ffi: request-reply against the Rust
echo service through hydra_rs (ctypes), driven over stdin/stdout by the
benchmark. Same protocol and messages as client.c:

  env:    HYDRA_REDIS_URL, BENCH_SERVICE, HYDRA_RS_LIBRARY, PYTHONPATH=ffi/python
  stdout: "ready" once registered and warmed up (BENCH_WARMUP requests, 300 by default)
  stdin:  "run <threads> <millis>" -> stdout: "done <requests> <elapsed_us>
          <errors> <latency_us>..."
"""

import os
import sys
import threading
import time

from hydra_rs import Hydra

SERVICE = os.environ.get("BENCH_SERVICE", "bench-echo")
TO = f"{SERVICE}:/"
PAD = "x" * 64


def request_once(h, n):
    body = {"n": n, "pad": PAD}
    try:
        reply = h.request(TO, body, timeout=5.0)
    except Exception as error:  # counted, reported
        print(f"bench client: request: {error}", file=sys.stderr)
        return 1
    if reply["body"] != {"echo": body}:
        print(f"bench client: wrong reply {reply}", file=sys.stderr)
        return 1
    return 0


def run(h, threads, millis):
    results = [None] * threads
    start = time.perf_counter_ns()
    deadline = start + millis * 1_000_000

    def work(index):
        n = index << 40
        latencies = []
        errors = 0
        clock = time.perf_counter_ns
        while True:
            begin = clock()
            if begin >= deadline:
                break
            errors += request_once(h, n)
            n += 1
            latencies.append((clock() - begin) // 1000)
        results[index] = (latencies, errors)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = (time.perf_counter_ns() - start) // 1000
    latencies = [lat for lats, _ in results for lat in lats]
    errors = sum(e for _, e in results)
    print("done", len(latencies), elapsed, errors, " ".join(map(str, latencies)), flush=True)


def main():
    with Hydra({"hydra": {"serviceName": "bench-py", "serviceIP": "127.0.0.1"}}) as h:
        h.register_service()
        for i in range(int(os.environ.get("BENCH_WARMUP", "300"))):
            if request_once(h, i):
                sys.exit(1)
        print("ready", flush=True)
        for line in sys.stdin:
            words = line.split()
            if len(words) == 3 and words[0] == "run":
                run(h, int(words[1]), int(words[2]))


if __name__ == "__main__":
    main()
