#!/usr/bin/env python3
"""User-space instructions per request of trellis-proxy, nginx and HAProxy, under callgrind.

Timings on a shared two-core machine move by several per cent from run to run; the number of
instructions a proxy executes per request does not (to a few in ten thousand), so this is the
figure to compare two builds by, and the one that shows where the user-space part of the CPU
per request goes (`callgrind_annotate` on the files it leaves). The kernel's socket work is not
in it: `run.py`'s CPU per request has both.

Each proxy runs under valgrind with instrumentation off; after warm-up requests it is switched
on for exactly N requests, then dumped: HTTP/1.1 keep-alive requests over 8 connections, one at
a time; then HTTP/2 (h2c) from h2load over 4 connections at 1, 10 and 100 concurrent streams
each (the upstream stays HTTP/1.1, as in run.py); then unary gRPC calls from h2load over 4
connections x 10 streams to `grpcup`, HTTP/2 both ways. Same configurations as run.py. Needs
Debian's valgrind and nghttp2-client.
"""
import argparse, os, re, shutil, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import GRPC_PORTS, GRPC_UP, H2_PORTS, PORTS, configs, wait_port  # noqa: E402

STREAMS = (1, 10, 100)  # HTTP/2 streams per connection


def ask(conns, n):
    """n requests, round-robin over `conns`, each read to its end before the next is sent."""
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    for i in range(n):
        c = conns[i % len(conns)]
        c.sendall(request)
        got = b""
        while not got.endswith(b"ok\n"):
            chunk = c.recv(4096)
            if not chunk:
                sys.exit("bench: the proxy closed a connection")
            got += chunk


def h2load(port, n, streams, path="/", args=("-H", ":authority: bench")):
    """n HTTP/2 requests over 4 connections, `streams` at a time on each."""
    out = subprocess.run(["h2load", "-n", str(n), "-c", "4", "-m", str(streams), *args,
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    ok = re.search(r"(\d+) succeeded", out)
    if not ok or int(ok.group(1)) != n:
        sys.exit(f"bench: h2load got {ok.group(1) if ok else 0} of {n} answers:\n{out}")


def http1():
    """A driver of HTTP/1.1 requests over 8 keep-alive connections, the same ones each call."""
    conns = []

    def drive(port, n):
        if not conns:
            conns.extend(socket.create_connection(("127.0.0.1", port)) for _ in range(8))
        ask(conns, n)
    return drive


def instructions(work, name, cmd, env, port, n, drive=None):
    """Instructions per request while `drive(port, n)` sends n requests (HTTP/1.1 by default)."""
    drive = drive or http1()
    out = os.path.join(work, f"callgrind.{name}")
    vg = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    log = open(os.path.join(work, f"{name}.valgrind.log"), "w")
    proc = subprocess.Popen(vg + cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_port(port, timeout=60)
        drive(port, 500)  # pools, label sets and caches warm
        control = lambda *a: subprocess.run(["callgrind_control", *a, str(proc.pid)], capture_output=True, check=True)
        control("-i", "on")
        drive(port, n)
        control("-i", "off")
        control("-d")
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait()
    dumps = sorted(f for f in os.listdir(work) if f.startswith(f"callgrind.{name}."))
    text = open(os.path.join(work, dumps[0])).read()
    total = re.search(r"^totals: (\d+)", text, re.M)
    return int(total.group(1)) / n if total else float("nan"), os.path.join(work, dumps[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True, help="where trellis-proxy is")
    ap.add_argument("--bench-dir", required=True, help="where grpcup is")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--smoke", action="store_true",
                    help="the test command's run: a few requests, nothing kept; figures mean nothing")
    args = ap.parse_args()
    if args.smoke:
        args.requests = 100
    work = tempfile.mkdtemp(prefix="trellis-instr-")
    every = configs(work, args.bin_dir, args.bench_dir)
    upstream = subprocess.Popen(every["upstream"][0], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    grpcup = subprocess.Popen(every["grpcup"][0], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_port(PORTS["upstream"])
        wait_port(GRPC_UP)
        per = {}
        for name in ("trellis", "nginx", "haproxy"):
            cmd, env = every[name]
            per[name], kept = instructions(work, name, cmd, env, PORTS[name], args.requests)
            print(f"{name:10} {per[name]:>9,.0f} user-space instructions per request   ({kept})")
        for peer in ("nginx", "haproxy"):
            print(f"trellis / {peer}: {per['trellis'] / per[peer]:.2f}")
        print("\nHTTP/2, 4 connections, streams per connection:")
        h2 = {}
        for streams in (10,) if args.smoke else STREAMS:
            for name in ("trellis", "nginx", "haproxy"):
                cmd, env = every[name]
                drive = lambda port, n, m=streams: h2load(port, n, m)
                h2[(name, streams)], kept = instructions(
                    work, f"{name}-h2-{streams}", cmd, env, H2_PORTS[name], args.requests, drive)
                print(f"  {streams:>3} {name:10} {h2[(name, streams)]:>9,.0f} per request   ({kept})")
            for peer in ("nginx", "haproxy"):
                print(f"  {streams:>3} trellis / {peer}: {h2[('trellis', streams)] / h2[(peer, streams)]:.2f}")
        print("\ngRPC unary calls, HTTP/2 both ways, 4 connections x 10 streams:")
        grpc = {}
        call = ("-H", ":authority: rpc", "-H", "content-type: application/grpc", "-H", "te: trailers",
                "-d", os.path.join(work, "grpc-1.bin"))
        for name in ("trellis", "nginx", "haproxy"):
            cmd, env = every[name]
            drive = lambda port, n: h2load(port, n, 10, "/bench.Echo/Say", call)
            grpc[name], kept = instructions(work, f"{name}-grpc", cmd, env, GRPC_PORTS[name], args.requests, drive)
            print(f"      {name:10} {grpc[name]:>9,.0f} per call   ({kept})")
        for peer in ("nginx", "haproxy"):
            print(f"      trellis / {peer}: {grpc['trellis'] / grpc[peer]:.2f}")
    finally:
        for p in (upstream, grpcup):
            p.terminate()
            p.wait()
    if args.smoke:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"callgrind files kept in {work} (callgrind_annotate FILE)")


if __name__ == "__main__":
    if not shutil.which("valgrind"):
        sys.exit("bench: valgrind missing (apt-get install -y valgrind)")
    main()
