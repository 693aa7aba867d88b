#!/usr/bin/env python3
"""Runs direct / trellis-proxy / nginx / HAProxy against one upstream and compares them.

Pinning: the load generator runs alone on CPU 1; the upstream and the proxy share CPU 0, as a
sidecar shares its pod's CPU. Each proxy gets one worker (nginx worker_processes 1, HAProxy
nbthread 1, trellis-proxy one runtime thread), HTTP/1.1 keep-alive to the upstream, no
access logs. Closed loop: wrk at 16 and 64 connections, interleaved repetitions, median
[min-max]. Open loop: bench's `openloop` at 20/50/80 % of nginx's saturation (interleaved
repetitions too, median), latency measured from the intended send time; a run during which
other processes used over 2 % of a CPU (each task's exact run time, from /proc) is run again,
and the script lists them. CPU µs per request
from /proc (and how much of it is user time: the rest is the kernel's socket work); resident
memory idle, after load and holding 1,000 idle client connections. Ratios against nginx and
HAProxy are taken per repetition, between runs made back to back, and summarised as median
[min-max].
"""
import argparse, json, os, re, resource, shutil, socket, statistics, subprocess, sys, tempfile, time

PORTS = {"upstream": 18901, "nginx": 18902, "haproxy": 18903, "trellis": 18904}
H2_PORTS = {"nginx": 18912, "haproxy": 18913, "trellis": 18904}
# gRPC: `grpcup` (bench/src/grpcup.rs) behind each proxy, over HTTP/2 both ways.
GRPC_UP = 18950
GRPC_PORTS = {"nginx": 18922, "haproxy": 18923, "trellis": 18904}
# (name, method, messages the client sends): unary, server streaming (100 answers), client streaming.
GRPC_CALLS = (("unary", "Say", 1), ("server-stream", "Stream", 1), ("client-stream", "Say", 100))
TICK = os.sysconf("SC_CLK_TCK")
RATES = (20, 50, 80)  # open-loop rates, % of nginx's saturation
STREAMS = (1, 10, 100)  # HTTP/2 streams per connection (h2load -m), over 16 connections
# trellis-proxy again, exporting a span per request (OTLP/HTTP, every request sampled) to a sink.
OTLP_PROXY, OTLP_ADMIN, OTLP_SINK = 18907, 18909, 18960


def stat(pid):
    """The fields of /proc/`pid`/stat after the command name (which may hold spaces): state first."""
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()


def cpu_seconds(pid):
    """User and system CPU seconds of `pid` so far."""
    fields = stat(pid)
    return int(fields[11]) / TICK, int(fields[12]) / TICK


# An open-loop run during which other processes used more than this share of a CPU is run again
# (up to RETRIES times): a 30 ms burst on the servers' core moves a p99 tenfold.
DISTURBED = 0.02
RETRIES = 2


def task_times():
    """CPU nanoseconds so far of every task on the machine, and of the children each process has
    reaped. Exact run times (schedstat) rather than sampled ticks, so a short burst shows; a
    process that came and went during a run shows through its parent."""
    times = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                times[(pid, tid)] = int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
            fields = stat(pid)
            times[(pid, "reaped")] = (int(fields[13]) + int(fields[14])) * 1_000_000_000 // TICK
        except (OSError, IndexError, ValueError):  # gone meanwhile
            pass
    return times


def others(before, ours):
    """CPU seconds used since `before` (a `task_times`) by processes outside `ours` (pids), and
    the name and seconds of the biggest user."""
    by_pid = {}
    for key, ns in task_times().items():
        if key[0] not in ours and ns > before.get(key, 0):
            by_pid[key[0]] = by_pid.get(key[0], 0) + ns - before.get(key, 0)
    if not by_pid:
        return 0.0, ("-", 0.0)
    top = max(by_pid, key=by_pid.get)
    try:
        name = open(f"/proc/{top}/comm").read().strip()
    except OSError:
        name = f"pid {top}"
    return sum(by_pid.values()) / 1e9, (name, by_pid[top] / 1e9)


def stolen():
    """Seconds so far that the hypervisor gave CPUs 0 and 1 (the run's) to something else while
    they had work to do: steal time, load that no process on this machine shows."""
    ticks = 0
    for line in open("/proc/stat"):
        if line.startswith(("cpu0 ", "cpu1 ")):
            ticks += int(line.split()[8])
    return ticks / TICK


def mark():
    """Where a run starts, for `load_since`."""
    return time.time(), task_times(), stolen()


def load_since(since, own):
    """Since `since` (a `mark`): the share of a CPU that processes outside `own` used, and the
    share of the run's two CPUs' time that the hypervisor took."""
    started, times, steal = since
    elapsed = time.time() - started
    return others(times, own)[0] / elapsed, (stolen() - steal) / (2 * elapsed)


def ours(procs):
    """The run's own processes: this script (its load generators are its reaped children) and the servers."""
    return {str(os.getpid())} | {str(p.pid) for p in procs.values()}


def report_other_load(share, steal, disturbed, kept):
    print(f"\nOther processes used {share:.0%} of a CPU during the run; the hypervisor took {steal:.1%} of"
          " the run's two CPUs' time (steal: another machine's load, in 10 ms ticks, too coarse to place in a run).")
    if share > 0.1:
        print("warning: other work on the machine may have spoiled this run")
    if disturbed:
        print(f"Open-loop runs during which other processes used over {DISTURBED:.0%} of a CPU, run again"
              f" (up to {RETRIES} times): {len(disturbed)}; still disturbed and kept: {kept}")
        for target, pct, used, (name, top) in disturbed:
            print(f"  {target} at {pct} %: others {used * 1000:.0f} ms, most of it {name} ({top * 1000:.0f} ms)")


def open_run(bin_dir, name, port, rate, seconds, own, smoke):
    """One `openloop` run at `rate` against `name` on `port`: its JSON report, plus `retried`,
    the (CPU seconds, (top process, its seconds)) of each try during which processes outside
    `own` used over DISTURBED of a CPU, and `disturbed`, whether the run kept was one (up to
    RETRIES tries again). The smoke run tries once and stops on any error."""
    retried = []
    for _attempt in range((0 if smoke else RETRIES) + 1):
        before = task_times()
        out = subprocess.run(["taskset", "-c", "1", os.path.join(bin_dir, "openloop"), "--target", f"127.0.0.1:{port}",
                              "--rate", str(rate), "--duration", str(seconds)], capture_output=True, text=True).stdout
        used, top = others(before, own)
        if used <= DISTURBED * seconds:
            break
        retried.append((used, top))
    report = dict(json.loads(out), retried=retried, disturbed=used > DISTURBED * seconds)
    if smoke and report["errors"]:
        sys.exit(f"bench: {name} answered errors in the smoke run (open loop)")
    return report


def fell_behind(run):
    """The run fell behind its rate and was still behind at the end: the requests due in its last
    tenth waited ten times the run's median and over a millisecond. At 80 % load a stretch in
    which the servers' core runs slow, or runs something else, does that to any server."""
    return run["last_tenth_p50_us"] > max(10 * run["p50_us"], 1000)


def paired(a, b):
    """a / b per repetition, median [min-max]. Each pair ran back to back, and this VM's speed
    drifts over a run (by more than 2x); a ratio of medians mixes those phases, a ratio within
    one repetition cancels them."""
    ratios = [x / max(y, 1e-9) for x, y in zip(a, b)]
    return f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench: nothing listening on {port}")


def start(work, name, cmd, env=None):
    log = open(os.path.join(work, f"{name}.log"), "w")
    return subprocess.Popen(["taskset", "-c", "0"] + cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def configs(work, proxy_dir, bench_dir=None):
    """Each server's command and environment; `grpcup` too when `bench_dir` holds it."""
    up = f"""daemon off; master_process off; worker_processes 1; pid {work}/up.pid; error_log {work}/up.err;
events {{ worker_connections 8000; }}
http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  server {{ listen 127.0.0.1:{PORTS['upstream']} reuseport; location / {{ return 200 "ok\\n"; }} }}
  server {{ listen 127.0.0.1:{OTLP_SINK}; client_max_body_size 64m; location / {{ return 200; }} }} }}"""
    ngx = f"""daemon off; master_process off; worker_processes 1; pid {work}/ngx.pid; error_log {work}/ngx.err;
events {{ worker_connections 8000; }}
http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  upstream u {{ server 127.0.0.1:{PORTS['upstream']}; keepalive 128; keepalive_requests 10000000; }}
  server {{ listen 127.0.0.1:{PORTS['nginx']}; listen 127.0.0.1:{H2_PORTS['nginx']} http2;
    location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
  upstream g {{ server 127.0.0.1:{GRPC_UP}; keepalive 128; keepalive_requests 10000000; }}
  server {{ listen 127.0.0.1:{GRPC_PORTS['nginx']} http2; http2_max_concurrent_streams 1000;
    location / {{ grpc_pass grpc://g; }} }} }}"""
    hap = f"""global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  option http-keep-alive
  http-reuse always
frontend f
  bind 127.0.0.1:{PORTS['haproxy']}
  bind 127.0.0.1:{H2_PORTS['haproxy']} proto h2
  default_backend b
backend b
  server s1 127.0.0.1:{PORTS['upstream']}
frontend fg
  bind 127.0.0.1:{GRPC_PORTS['haproxy']} proto h2
  default_backend bg
backend bg
  server g1 127.0.0.1:{GRPC_UP} proto h2
"""
    trellis = {
        "version": "bench.1", "revision": "bench",
        # The peers' limits (worker_connections, maxconn 8000), not the mesh's defaults of
        # 1,024 pending requests and connections: h2load at 100 streams keeps 1,600 in flight.
        "services": {"bench": {"name": "bench", "versions": ["v1"], "rules": [
            {"matches": [], "backends": [{"version": "v1", "weight": 100}]}],
            "traffic": {"load_balancer": "p2c-ewma", "outlier": {
                "enabled": True, "consecutive_5xx": 5, "consecutive_gateway_errors": 5, "interval_ms": 10000,
                "base_ejection_ms": 30000, "max_ejected_percent": 50},
                "limits": {"max_connections": 8000, "max_pending_requests": 8000, "max_requests_per_connection": 0}}},
            "rpc": {"name": "rpc", "versions": ["v1"], "protocol": "grpc", "rules": [
                {"matches": [], "backends": [{"version": "v1", "weight": 100}]}]}},
        "endpoints": {"bench": [{"version": "v1", "addr": f"127.0.0.1:{PORTS['upstream']}", "proxy_id": "up"}],
                      "rpc": [{"version": "v1", "addr": f"127.0.0.1:{GRPC_UP}", "proxy_id": "grpcup"}]},
    }
    # gRPC requests as h2load sends them: one message, or a hundred (client streaming).
    message = b"\x00" + (29).to_bytes(4, "big") + b"hello from the bench generator"[:29]
    files = {"up.conf": up, "ngx.conf": ngx, "haproxy.cfg": hap, "trellis.json": json.dumps(trellis),
             "grpc-1.bin": message, "grpc-100.bin": message * 100}
    for name, text in files.items():
        open(os.path.join(work, name), "wb" if isinstance(text, bytes) else "w").write(text)
    env = dict(os.environ, TRELLIS_SERVICE="client", TRELLIS_VERSION="v1",
               TRELLIS_CONFIG_FILE=os.path.join(work, "trellis.json"), TRELLIS_LOG="warn",
               TRELLIS_OUTBOUND_ADDR=f"127.0.0.1:{PORTS['trellis']}", TRELLIS_INBOUND_ADDR="127.0.0.1:18906",
               TRELLIS_ADMIN_ADDR="127.0.0.1:18905", TRELLIS_WORKER_THREADS="1")
    otlp = dict(env, TRELLIS_OUTBOUND_ADDR=f"127.0.0.1:{OTLP_PROXY}", TRELLIS_INBOUND_ADDR="127.0.0.1:18908",
                TRELLIS_ADMIN_ADDR=f"127.0.0.1:{OTLP_ADMIN}", OTEL_TRACES_SAMPLER="always_on",
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{OTLP_SINK}")
    servers = {
        "upstream": (["nginx", "-p", work, "-c", os.path.join(work, "up.conf")], None),
        "nginx": (["nginx", "-p", work, "-c", os.path.join(work, "ngx.conf")], None),
        "haproxy": (["haproxy", "-db", "-f", os.path.join(work, "haproxy.cfg")], None),
        "trellis": ([os.path.join(proxy_dir, "trellis-proxy")], env),
        "trellis-otlp": ([os.path.join(proxy_dir, "trellis-proxy")], otlp),
    }
    if bench_dir:
        servers["grpcup"] = ([os.path.join(bench_dir, "grpcup"), "--listen", f"127.0.0.1:{GRPC_UP}"], None)
    return servers


def wrk(port, conns, seconds):
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-H", "Host: bench",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, total, int(errors.group(1)) if errors else 0


def h2load(pid, port, n, streams, path="/", args=()):
    """n HTTP/2 requests over 16 connections, `streams` at a time on each, to the proxy with
    `pid`: (req/s, requests answered 2xx, the proxy's CPU µs per answered request, output)."""
    before = cpu_seconds(pid)
    out = subprocess.run(["taskset", "-c", "1", "h2load", "-n", str(n), "-c", "16", "-m", str(streams), *args,
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    used = sum(b - a for a, b in zip(before, cpu_seconds(pid)))
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    ok = re.search(r"(\d+) succeeded", out)
    answered = int(ok.group(1)) if ok else 0
    return float(rate.group(1)) if rate else float("nan"), answered, used / max(answered, 1) * 1e6, out


def shortfall(what, answered, sent, smoke, out):
    """Says when fewer were answered than sent; the smoke run stops on it, with h2load's output."""
    if answered != sent:
        print(f"warning: {what}: {answered} of {sent} answered")
        if smoke:
            sys.exit(f"bench: {what}: {answered} of {sent} answered in the smoke run:\n{out}")


def fmt(values, unit="", digits=0):
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:,.{digits}f}{unit} [{min(values):,.{digits}f}-{max(values):,.{digits}f}]"


def span_counts(admin):
    """trellis_proxy_spans_total by result, from a proxy's /metrics."""
    with socket.create_connection(("127.0.0.1", admin)) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        text = b"".join(iter(lambda: s.recv(65536), b"")).decode()
    found = re.findall(r'^trellis_proxy_spans_total\{result="(\w+)"\} (\d+)$', text, re.M)
    return {result: int(n) for result, n in found}


def hold_connections(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        socks.append(s)
    for s in socks:
        s.recv(4096)
    return socks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True, help="where openloop is")
    ap.add_argument("--proxy-dir", help="where trellis-proxy is (default: --bin-dir)")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--open-reps", type=int, default=5, help="interleaved repetitions of each open-loop rate")
    ap.add_argument("--smoke", action="store_true",
                    help="the test command's run: each step once, briefly, failing on any error; figures mean nothing")
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.reps, args.open_reps = 1, 1, 1
    h2_requests, held_conns = (600, 50) if args.smoke else (50000, 1000)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if os.cpu_count() < 2:
        sys.exit("bench: needs two CPUs to pin the load generator apart")
    work = tempfile.mkdtemp(prefix="trellis-bench-")
    procs = {}
    try:
        for name, (cmd, env) in configs(work, args.proxy_dir or args.bin_dir, args.bin_dir).items():
            procs[name] = start(work, name, cmd, env)
        for port in [*PORTS.values(), GRPC_UP, GRPC_PORTS["nginx"], GRPC_PORTS["haproxy"], OTLP_PROXY]:
            wait_port(port)
        time.sleep(0.5)
        since = mark()
        proxies = ["trellis", "nginx", "haproxy"]
        idle = {p: rss_mb(procs[p].pid) for p in proxies}
        targets = ["direct"] + proxies
        port_of = {"direct": PORTS["upstream"], **{p: PORTS[p] for p in proxies}}
        rps = {(t, c): [] for t in targets for c in (16, 64)}
        cpu = {p: [] for p in proxies}
        cpu_user = {p: [] for p in proxies}
        for t in targets:  # warm-up
            wrk(port_of[t], 64, 1)
        for _ in range(args.reps):
            for c in (16, 64):
                for t in targets:
                    before = cpu_seconds(procs[t].pid) if t in procs else (0, 0)
                    r, total, errors = wrk(port_of[t], c, args.seconds)
                    if errors:
                        print(f"warning: {t} answered {errors} non-2xx at c={c}")
                        if args.smoke:
                            sys.exit(f"bench: {t} answered errors in the smoke run")
                    rps[(t, c)].append(r)
                    if t in proxies and c == 64:
                        user, system = (b - a for a, b in zip(before, cpu_seconds(procs[t].pid)))
                        cpu[t].append((user + system) / total * 1e6)
                        cpu_user[t].append(user / total * 1e6)
        after = {p: rss_mb(procs[p].pid) for p in proxies}
        # Span export on against off, back to back: CPU per request at wrk c=64.
        export_cpu = {"trellis": [], "trellis-otlp": []}
        for _ in range(args.reps):
            for name, port in (("trellis", PORTS["trellis"]), ("trellis-otlp", OTLP_PROXY)):
                before = cpu_seconds(procs[name].pid)
                _, total, errors = wrk(port, 64, args.seconds)
                if errors and args.smoke:
                    sys.exit(f"bench: {name} answered errors in the smoke run")
                export_cpu[name].append(sum(b - a for a, b in zip(before, cpu_seconds(procs[name].pid))) / total * 1e6)
        spans = span_counts(OTLP_ADMIN)
        if args.smoke and (not spans["exported"] or spans["failed"]):
            sys.exit(f"bench: spans were not exported in the smoke run: {spans}")
        saturation = statistics.median(rps[("nginx", 64)])
        # Repeated and interleaved, like the closed loop: one disturbed slot moves a tail figure a lot.
        openloop = {(t, pct): [] for t in targets for pct in RATES}
        disturbed, own = [], ours(procs)
        for _ in range(args.open_reps):
            for pct in RATES:
                for t in targets:
                    run = open_run(args.bin_dir, t, port_of[t], int(saturation * pct / 100), args.seconds, own,
                                   args.smoke)
                    openloop[(t, pct)].append(run)
                    disturbed += [(t, pct, used, top) for used, top in run["retried"]]
        kept = sum(o["disturbed"] for runs in openloop.values() for o in runs)
        # HTTP/2 (h2c) in: requests per second and CPU per request at each stream count,
        # repeated and interleaved as the closed loop is.
        h2 = {(p, m): [] for p in proxies for m in STREAMS}
        h2_cpu = {(p, m): [] for p in proxies for m in STREAMS}
        for _ in range(args.reps):
            for m in STREAMS:
                for p in proxies:
                    rate, answered, cpu_per, out = h2load(procs[p].pid, H2_PORTS[p], h2_requests, m,
                                                          args=("-H", ":authority: bench"))
                    shortfall(f"{p}, HTTP/2 requests at {m} streams", answered, h2_requests, args.smoke, out)
                    h2[(p, m)].append(rate)
                    h2_cpu[(p, m)].append(cpu_per)
        # gRPC through each proxy to grpcup: each kind of call, 16 connections x 10 streams.
        grpc = {(p, k): [] for p in proxies for k, _, _ in GRPC_CALLS}
        grpc_cpu = {(p, k): [] for p in proxies for k, _, _ in GRPC_CALLS}
        for _ in range(args.reps):
            for kind, method, sent in GRPC_CALLS:
                calls = h2_requests // (10 if kind != "unary" else 1)
                grpc_args = ("-H", ":authority: rpc", "-H", "content-type: application/grpc", "-H", "te: trailers",
                             "-d", os.path.join(work, f"grpc-{sent}.bin"))
                for p in proxies:
                    rate, answered, cpu_per, out = h2load(procs[p].pid, GRPC_PORTS[p], calls, 10,
                                                          f"/bench.Echo/{method}", grpc_args)
                    shortfall(f"{p}, gRPC {kind} calls", answered, calls, args.smoke, out)
                    grpc[(p, kind)].append(rate)
                    grpc_cpu[(p, kind)].append(cpu_per)
        # The upstream connections an HTTP/2 burst left idle close within a few seconds (the
        # proxy's pool, nginx's keepalive); what is measured next is the clients' connections.
        time.sleep(0.5 if args.smoke else 5)
        held = {}
        for p in proxies:
            socks = hold_connections(PORTS[p], held_conns)
            time.sleep(0.5)
            held[p] = rss_mb(procs[p].pid)
            for s in socks:
                s.close()
        other, steal = load_since(since, own)
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)

    print("\nPinning: load generator on CPU 1; upstream and proxy on CPU 0. One worker per proxy.")
    print(f"Closed loop: wrk, {args.seconds}s x {args.reps} interleaved repetitions, median [min-max].\n")
    print(f"{'':10} {'req/s c=16':>28} {'req/s c=64':>28} {'CPU us/req':>22} {'of it user':>11}")
    for t in targets:
        c = fmt(cpu.get(t, []), digits=1) if t in cpu else "-"
        u = f"{statistics.median(cpu_user[t]):.1f}" if t in cpu_user else "-"
        print(f"{t:10} {fmt(rps[(t, 16)]):>28} {fmt(rps[(t, 64)]):>28} {c:>22} {u:>11}")
    print(f"\nHTTP/2 in (h2load, 16 connections, HTTP/1.1 to the upstream), {args.reps} interleaved repetitions:")
    print(f"{'streams':>9} {'':10} {'req/s':>28} {'CPU us/req':>22}")
    for m in STREAMS:
        for p in proxies:
            print(f"{m:>9} {p:10} {fmt(h2[(p, m)]):>28} {fmt(h2_cpu[(p, m)], digits=1):>22}")
    print("\ngRPC through each proxy to grpcup (h2load, 16 connections x 10 streams, HTTP/2 both ways):")
    print(f"{'call':>14} {'':10} {'calls/s':>28} {'CPU us/call':>22}")
    for kind, _, _ in GRPC_CALLS:
        for p in proxies:
            print(f"{kind:>14} {p:10} {fmt(grpc[(p, kind)]):>28} {fmt(grpc_cpu[(p, kind)], digits=1):>22}")
    print(f"\nOpen loop (latency from intended send time, µs), median of {args.open_reps}: "
          "p50 / p99 [min-max] / p99.9 / max; behind: runs that fell behind the rate and had not caught up at the end")
    for pct in RATES:
        print(f"  at {pct}% of nginx saturation ({int(saturation * pct / 100):,} req/s):")
        for t in targets:
            runs = openloop[(t, pct)]
            med = lambda k: int(statistics.median(o[k] for o in runs))
            errors = sum(o["errors"] for o in runs)
            behind = sum(fell_behind(o) for o in runs)
            print(f"    {t:10} {med('p50_us'):>8,} {fmt([o['p99_us'] for o in runs]):>24} {med('p999_us'):>8,}"
                  f" {med('max_us'):>9,}  errors {errors}  behind {behind}")
    print("\nSpan export (OTLP/HTTP protobuf to a sink, every request sampled), wrk c=64, CPU us/req:")
    print(f"  off {fmt(export_cpu['trellis'], digits=1)}   on {fmt(export_cpu['trellis-otlp'], digits=1)}"
          f"   on/off {paired(export_cpu['trellis-otlp'], export_cpu['trellis'])} (target <= 1.15)")
    print(f"  spans exported {spans.get('exported', 0):,}, dropped {spans.get('dropped', 0):,}, "
          f"failed {spans.get('failed', 0):,}")
    print(f"\nResident memory (MB): idle / after load / holding {held_conns:,} idle connections")
    for p in proxies:
        print(f"  {p:10} {idle[p]:6.1f} {after[p]:6.1f} {held[p]:6.1f}")
    p99s = lambda t, pct: [o["p99_us"] for o in openloop[(t, pct)]]
    print("\nRatios (trellis / peer), per repetition: median [min-max]")
    for peer in ("nginx", "haproxy"):
        print(f"  vs {peer:8} CPU/req {paired(cpu['trellis'], cpu[peer])}"
              f"  req/s c=64 {paired(rps[('trellis', 64)], rps[(peer, 64)])}")
        for m in STREAMS:
            print(f"    h2 at {m:>3} streams: req/s {paired(h2[('trellis', m)], h2[(peer, m)])}"
                  f"  CPU/req {paired(h2_cpu[('trellis', m)], h2_cpu[(peer, m)])}")
        for kind, _, _ in GRPC_CALLS:
            print(f"    gRPC {kind:>13}: calls/s {paired(grpc[('trellis', kind)], grpc[(peer, kind)])}"
                  f"  CPU/call {paired(grpc_cpu[('trellis', kind)], grpc_cpu[(peer, kind)])}")
        for pct in RATES:
            print(f"    p99 at {pct}% {paired(p99s('trellis', pct), p99s(peer, pct))}")
    print(f"  vs direct  req/s c=64 {paired(rps[('trellis', 64)], rps[('direct', 64)])}")
    report_other_load(other, steal, disturbed, kept)


if __name__ == "__main__":
    main()
