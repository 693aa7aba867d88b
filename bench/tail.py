#!/usr/bin/env python3
"""The open-loop tail of trellis-proxy against nginx's, judged on many pairs of runs.

`bench/run.sh` takes five pairs per rate. On a shared VM a 5 s run's p99 moves from one run to
the next by more than the gap between two servers (bench/README.md, "Other load on the
machine"), so a median of five pairs lands on either side of 1 for two servers whose tails are
the same. Here trellis-proxy and nginx, set up as `bench/run.sh` sets them up, run `--pairs`
pairs at each rate (20/50/80 % of nginx's saturation), back to back in a shuffled order. The
answer per rate is the median of the per-pair p99 ratios with a bootstrap 95 % interval: an
interval under 1 says trellis-proxy's tail is the shorter, over 1 the longer, and across 1 that
this machine cannot tell them apart.
"""
import argparse, os, random, statistics, sys, tempfile, time

import run as R

BOOTSTRAP = 2000  # resamples of the pairs for the interval


def interval(ratios, rng):
    """The median of `ratios` and a bootstrap 95 % interval of it."""
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(BOOTSTRAP))
    return statistics.median(ratios), medians[int(0.025 * BOOTSTRAP)], medians[int(0.975 * BOOTSTRAP) - 1]


def verdict(low, high):
    if high < 1:
        return "shorter than nginx's"
    if low > 1:
        return "longer than nginx's"
    return "not told apart from nginx's on this machine"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", required=True, help="where openloop is")
    ap.add_argument("--proxy-dir", required=True, help="where trellis-proxy is")
    ap.add_argument("--pairs", type=int, default=20, help="pairs of runs at each rate")
    ap.add_argument("--seconds", type=int, default=5, help="each open-loop run's length")
    ap.add_argument("--smoke", action="store_true",
                    help="the test command's run: two short pairs, failing on any error; figures mean nothing")
    args = ap.parse_args()
    if args.smoke:
        args.pairs, args.seconds = 2, 1
    if os.cpu_count() < 2:
        sys.exit("bench: needs two CPUs to pin the load generator apart")
    targets = ("trellis", "nginx")
    work = tempfile.mkdtemp(prefix="trellis-tail-")
    servers = R.configs(work, args.proxy_dir)
    procs = {}
    try:
        for name in ("upstream", *targets):
            procs[name] = R.start(work, name, *servers[name])
        for name in ("upstream", *targets):
            R.wait_port(R.PORTS[name])
        time.sleep(0.5)
        for t in targets:  # warm-up
            R.wrk(R.PORTS[t], 64, 1)
        saturation = statistics.median(R.wrk(R.PORTS["nginx"], 64, args.seconds)[0] for _ in range(3))
        # Seeded: the order of each pair is random, and the same from run to run.
        rng, own = random.Random(1), R.ours(procs)
        runs = {(t, pct): [] for t in targets for pct in R.RATES}
        since = R.mark()
        for _ in range(args.pairs):
            for pct in R.RATES:
                for t in rng.sample(targets, len(targets)):
                    runs[(t, pct)].append(R.open_run(args.bin_dir, t, R.PORTS[t], int(saturation * pct / 100),
                                                     args.seconds, own, args.smoke))
        share, steal = R.load_since(since, own)
    finally:
        for p in procs.values():
            p.kill()
    print(f"Open loop, trellis-proxy against nginx: {args.pairs} pairs of {args.seconds} s runs at each rate, "
          f"nginx's saturation {saturation:,.0f} req/s.")
    print("p99 in µs, median [min-max]; the ratio is the median of the pairs' ratios with a bootstrap 95 % interval.")
    for pct in R.RATES:
        a, b = ([o["p99_us"] for o in runs[(t, pct)]] for t in targets)
        ratios = [x / max(y, 1) for x, y in zip(a, b)]
        mid, low, high = interval(ratios, rng)
        behind = sum(R.fell_behind(o) for t in targets for o in runs[(t, pct)])
        print(f"  at {pct}% ({int(saturation * pct / 100):,} req/s): trellis {R.fmt(a)}, nginx {R.fmt(b)}; "
              f"ratio {mid:.2f} [{low:.2f}-{high:.2f}], under 1 in {sum(r < 1 for r in ratios)} of {len(ratios)}"
              f"{f', runs that fell behind {behind}' if behind else ''}: {verdict(low, high)}")
    kept = sum(o["disturbed"] for rs in runs.values() for o in rs)
    retried = sum(len(o["retried"]) for rs in runs.values() for o in rs)
    print(f"Other processes used {share:.0%} of a CPU, steal {steal:.1%}; runs tried again as disturbed: {retried}, "
          f"still disturbed and kept: {kept}.")


if __name__ == "__main__":
    main()
