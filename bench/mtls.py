#!/usr/bin/env python3
"""The cost of mTLS between proxies: a two-proxy chain (wrk -> proxy A -> proxy B -> upstream)
in plaintext, the same chain over mTLS (TLS 1.3, client certificates from the mesh's CA), and
nginx doing the same two hops with mTLS between them, in one run.

Pinning: wrk (and openssl s_time) alone on CPU 1; the upstream and both proxies on CPU 0.
One worker each. Closed loop at 16 and 64 connections, interleaved repetitions, median
[min-max]; CPU microseconds per request of both proxies together (from /proc); p99 from wrk.
Handshakes per second: `openssl s_time -new` with a client certificate against the second
hop's TLS listener (one client: a floor on the server's rate, the same client for both).
"""
import argparse, json, os, re, resource, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from run import cpu_seconds, wait_port, start, fmt, load_since, mark, ours, report_other_load  # noqa: E402

DOMAIN = "bench.local"
PORTS = {"upstream": 18921, "plain-a": 18922, "plain-b": 18923, "mtls-a": 18924, "mtls-b": 18925,
         "nginx-a": 18926, "nginx-b": 18927}


def proxy_env(work, name, outbound, inbound, admin, app, config, identity=None):
    env = dict(os.environ, TRELLIS_SERVICE="bench" if name.endswith("-b") else "client", TRELLIS_VERSION="v1",
               TRELLIS_PROXY_ID=name, TRELLIS_CONFIG_FILE=config, TRELLIS_LOG="warn", TRELLIS_WORKER_THREADS="1",
               TRELLIS_OUTBOUND_ADDR=f"127.0.0.1:{outbound}", TRELLIS_INBOUND_ADDR=f"127.0.0.1:{inbound}",
               TRELLIS_ADMIN_ADDR=f"127.0.0.1:{admin}", TRELLIS_APP_ADDR=f"127.0.0.1:{app}")
    if identity:
        env["TRELLIS_IDENTITY_DIR"] = identity
    return env


def setup(work, bin_dir, trellis):
    cp = os.path.join(work, "cp")
    for service, out in (("client", "id-a"), ("bench", "id-b")):
        subprocess.run([trellis, "issue-cert", service, "--data-dir", cp,
                        "--trust-domain", DOMAIN, "--out", os.path.join(work, out)], check=True,
                       stdout=subprocess.DEVNULL)
    ida, idb = os.path.join(work, "id-a"), os.path.join(work, "id-b")
    service = {"name": "bench", "versions": ["v1"], "rules": [{"matches": [], "backends": [{"version": "v1", "weight": 100}]}]}

    def config(mtls, b_port, identity):
        endpoint = {"version": "v1", "addr": f"127.0.0.1:{b_port}", "proxy_id": "b"}
        if identity:
            endpoint["identity"] = f"spiffe://{DOMAIN}/svc/bench"
        return {"version": "bench.1", "revision": "bench",
                "mesh": {"mtls": mtls, "default_access": "authenticated"},
                "services": {"bench": service}, "endpoints": {"bench": [endpoint]}}

    files = {}
    for kind, identity in (("plain", False), ("mtls", True)):
        path = os.path.join(work, f"{kind}.json")
        json.dump(config("strict" if identity else "disabled", PORTS[f"{kind}-b"], identity), open(path, "w"))
        files[kind] = path
    up = f"""daemon off; master_process off; worker_processes 1; pid {work}/up.pid; error_log {work}/up.err;
events {{ worker_connections 8000; }}
http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  server {{ listen 127.0.0.1:{PORTS['upstream']}; location / {{ return 200 "ok\\n"; }} }} }}"""
    # nginx: hop A speaks TLS 1.3 with a client certificate to hop B, which verifies it.
    ngx_a = f"""daemon off; master_process off; worker_processes 1; pid {work}/a.pid; error_log {work}/a.err;
events {{ worker_connections 8000; }}
http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  upstream b {{ server 127.0.0.1:{PORTS['nginx-b']}; keepalive 128; keepalive_requests 10000000; }}
  server {{ listen 127.0.0.1:{PORTS['nginx-a']};
    location / {{ proxy_pass https://b; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_protocols TLSv1.3; proxy_ssl_session_reuse on;
      proxy_ssl_certificate {ida}/cert.pem; proxy_ssl_certificate_key {ida}/key.pem;
      proxy_ssl_trusted_certificate {ida}/anchor.pem; proxy_ssl_verify on; proxy_ssl_verify_depth 3;
      proxy_ssl_name bench.svc.{DOMAIN}; proxy_ssl_server_name on; }} }} }}"""
    ngx_b = f"""daemon off; master_process off; worker_processes 1; pid {work}/b.pid; error_log {work}/b.err;
events {{ worker_connections 8000; }}
http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  upstream u {{ server 127.0.0.1:{PORTS['upstream']}; keepalive 128; keepalive_requests 10000000; }}
  server {{ listen 127.0.0.1:{PORTS['nginx-b']} ssl; ssl_protocols TLSv1.3;
    ssl_certificate {idb}/cert.pem; ssl_certificate_key {idb}/key.pem;
    ssl_client_certificate {idb}/anchor.pem; ssl_verify_client on; ssl_verify_depth 3;
    location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}"""
    for name, text in (("up.conf", up), ("a.conf", ngx_a), ("b.conf", ngx_b)):
        open(os.path.join(work, name), "w").write(text)
    proxy = os.path.join(bin_dir, "trellis-proxy")
    u = PORTS["upstream"]
    return {
        "upstream": (["nginx", "-p", work, "-c", os.path.join(work, "up.conf")], None),
        "plain-a": ([proxy], proxy_env(work, "plain-a", PORTS["plain-a"], 18931, 18932, u, files["plain"])),
        "plain-b": ([proxy], proxy_env(work, "plain-b", 18933, PORTS["plain-b"], 18934, u, files["plain"])),
        "mtls-a": ([proxy], proxy_env(work, "mtls-a", PORTS["mtls-a"], 18935, 18936, u, files["mtls"], ida)),
        "mtls-b": ([proxy], proxy_env(work, "mtls-b", 18937, PORTS["mtls-b"], 18938, u, files["mtls"], idb)),
        "nginx-b": (["nginx", "-p", work, "-c", os.path.join(work, "b.conf")], None),
        "nginx-a": (["nginx", "-p", work, "-c", os.path.join(work, "a.conf")], None),
    }, ida


def wrk(port, conns, seconds):
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
                          "-H", "Host: bench", f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 1, "ms": 1000, "s": 1_000_000}
    return rps, total, int(errors.group(1)) if errors else 0, float(p99.group(1)) * scale[p99.group(2)]


def handshakes(port, ida, seconds):
    out = subprocess.run(["taskset", "-c", "1", "openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
                          "-time", str(seconds), "-cert", f"{ida}/cert.pem", "-key", f"{ida}/key.pem",
                          "-CAfile", f"{ida}/anchor.pem"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+) connections in ([\d.]+) real seconds", out)
    return int(m.group(1)) / float(m.group(2)) if m else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True, help="where the trellis-proxy to measure is")
    ap.add_argument("--trellis", required=True, help="the trellis binary, to issue the certificates")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--smoke", action="store_true",
                    help="the test command's run: each step once, briefly, failing on any error; figures mean nothing")
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.reps = 1, 1
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix="trellis-mtls-bench-")
    procs = {}
    try:
        commands, ida = setup(work, args.bin_dir, args.trellis)
        for name, (cmd, env) in commands.items():
            procs[name] = start(work, name, cmd, env)
        for port in PORTS.values():
            wait_port(port)
        time.sleep(0.5)
        since = mark()
        chains = {"trellis plaintext": ("plain-a", "plain-b"), "trellis mTLS": ("mtls-a", "mtls-b"),
                  "nginx mTLS": ("nginx-a", "nginx-b")}
        results = {(c, n): {"rps": [], "cpu": [], "p99": []} for c in chains for n in (16, 64)}
        for chain, (a, _) in chains.items():  # warm-up: connections and sessions made
            status = wrk(PORTS[a], 16, 1)
            if status[2] or status[1] == 0:
                sys.exit(f"bench: {chain} answers errors; see {work}/*.log")
        for _ in range(args.reps):
            for conns in (16, 64):
                for chain, (a, b) in chains.items():
                    pids = [procs[a].pid, procs[b].pid]
                    before = sum(sum(cpu_seconds(p)) for p in pids)
                    rps, total, errors, p99 = wrk(PORTS[a], conns, args.seconds)
                    used = sum(sum(cpu_seconds(p)) for p in pids) - before
                    r = results[(chain, conns)]
                    r["rps"].append(rps)
                    r["cpu"].append(used * 1e6 / max(total, 1))
                    r["p99"].append(p99)
                    if errors:
                        print(f"  ! {chain} c={conns}: {errors} non-2xx responses")
                        if args.smoke:
                            sys.exit(f"bench: {chain} answered errors in the smoke run")
        shakes = {"trellis-proxy": handshakes(PORTS["mtls-b"], ida, args.seconds),
                  "nginx": handshakes(PORTS["nginx-b"], ida, args.seconds)}
        other, steal = load_since(since, ours(procs))
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait()
    print("mTLS between proxies: wrk -> A -> B -> upstream; wrk and openssl on CPU 1, the rest on CPU 0.")
    print(f"{args.reps} interleaved repetitions of {args.seconds} s; median [min-max].\n")
    print(f"{'chain':<18} {'conns':>5}  {'requests/s':>26}  {'CPU µs/req (A+B)':>20}  {'p99 µs':>22}")
    for (chain, conns), r in results.items():
        print(f"{chain:<18} {conns:>5}  {fmt(r['rps']):>26}  {fmt(r['cpu']):>20}  {fmt(r['p99']):>22}")
    print()
    for conns in (16, 64):
        cpu = {c: statistics.median(results[(c, conns)]["cpu"]) for c in chains}
        p99 = {c: statistics.median(results[(c, conns)]["p99"]) for c in chains}
        print(f"c={conns}: trellis mTLS / plaintext CPU per request = {cpu['trellis mTLS'] / cpu['trellis plaintext']:.2f}x "
              f"(target <= 1.3x); vs nginx mTLS = {cpu['trellis mTLS'] / cpu['nginx mTLS']:.2f}x; "
              f"p99 mTLS / plaintext = {p99['trellis mTLS'] / p99['trellis plaintext']:.2f}x")
    print(f"handshakes/s (openssl s_time -new, one client): trellis-proxy {shakes['trellis-proxy']:,.0f}, "
          f"nginx {shakes['nginx']:,.0f}")
    report_other_load(other, steal, [], 0)


if __name__ == "__main__":
    main()
