#!/usr/bin/env python3
"""End-to-end benchmark: nat64d against TAYGA (+ nftables masquerade) and
plain kernel forwarding, on the same three-namespace path, in one run.

    client (IPv6-only) ── gateway ── server (IPv4-only)

Modes (--modes, comma-separated):
  nat64d        nat64d, offloads on, one queue per CPU (the defaults)
  nat64d-nooff  nat64d with TUN offloads off
  nat64d-q1     nat64d with one queue (one worker)
  nat64d-plain  nat64d without io_uring: one read(2) and one write(2) per packet
  nat64d-log    nat64d with the per-session mapping log to a file (issue 14)
  nat64d-blocks nat64d with 512-port blocks and their mapping log to a file
  nat64d-xdp    nat64d on the AF_XDP dataplane (issue 20): sockets on g0 and g1,
                no TUN; the client's and server's veths send complete checksums
                (ethtool tx off: veth hands a peer partial ones), which also
                turns their TSO off for this mode
  nat64d-xdp-generic  the same with the program in the generic (skb) path
  nat64d-xdp-threaded nat64d-xdp with the gateway veths' NAPI threaded (their
                receive, XDP program and copy into the UMEM, in a kernel thread
                instead of the sender's softirq)
  tayga         TAYGA (Debian) with nftables masquerade behind it: the classic
                stateful NAT64; same network-specific prefix 2001:db8:64::/96
  kernel6       plain IPv6 forwarding, no translation (the path's limit)
  kernel4       plain IPv4 forwarding, no translation

Figures (each bounded in time, repeated --reps times, medians):
  tcp1 / tcp4 / tcp1r  iperf3 TCP, 1 and 4 streams client->server, 1 stream reversed (Gbit/s)
  udp64                iperf3 UDP, 64-byte payloads, unlimited rate: packets/s delivered, loss %
  cps                  wrk against nginx, `Connection: close`: new TCP connections per second
  cpu                  the translator process's CPU use during tcp1 (% of one core)
  cpu_pp               64-byte UDP offered at a fixed rate (--fixed-pps, 100k packets/s; pick
                       one no mode loses packets at, or the figure counts lost work): the
                       translator's CPU (user + system, kernel work done in its
                       context included) per delivered packet, in microseconds
Each mode first moves 16 MiB over TCP and compares SHA-256 at both ends.

Run as root: scripts/bench.py [--modes ...] [--figures cps,...] [--reps 3] [--secs 5]
Needs: iproute2, iperf3, nginx-light, wrk, tayga, nftables (installed with --install).
Documentation addresses only; everything is torn down at the end.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C, G, S = "nb-client", "nb-gw", "nb-server"
PREFIX = "2001:db8:64::/96"
SERVER4 = "192.0.2.2"
SERVER_V6_TRANSLATED = "2001:db8:64::c000:202"
SERVER_V6_NATIVE = "2001:db8:2::2"
SERVER_V4_NATIVE = "192.0.2.2"
POOL4 = "203.0.113.0/28"
TAYGA_POOL = "198.51.100.128/25"


def sh(*args, check=True, capture=False, timeout=None, ns=None):
    cmd = list(args)
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    r = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr if capture else ''}")
    return r.stdout if capture else r.returncode


def namespaces(names, links):
    """Network namespaces with loopback up, and veth pairs between them:
    links are (namespace, device, peer namespace, peer device).
    Shared with proxy_bench.py."""
    for n in names:
        sh("ip", "netns", "add", n)
        sh("ip", "-n", n, "link", "set", "lo", "up")
    for ns, dev, peer_ns, peer in links:
        sh("ip", "link", "add", dev, "netns", ns, "type", "veth", "peer", "name", peer, "netns", peer_ns)


def bg(*args, ns=None, log=None):
    cmd = list(args)
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    out = open(log, "w") if log else subprocess.DEVNULL
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL)


def stop(p):
    if p and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Lab:
    def __init__(self, work):
        self.work = work
        self.procs = []

    def up(self):
        self.down()
        namespaces((C, G, S), [(C, "c0", G, "g0"), (S, "s0", G, "g1")])
        # Client: IPv6 (and IPv4 for the kernel4 baseline).
        sh("ip", "-n", C, "addr", "add", "2001:db8:1::10/64", "dev", "c0", "nodad")
        sh("ip", "-n", C, "addr", "add", "198.51.100.10/26", "dev", "c0")
        sh("ip", "-n", C, "link", "set", "c0", "up")
        sh("ip", "-n", C, "-6", "route", "add", "default", "via", "2001:db8:1::1")
        sh("ip", "-n", C, "route", "add", "default", "via", "198.51.100.1")
        # Gateway.
        sh("ip", "-n", G, "addr", "add", "2001:db8:1::1/64", "dev", "g0", "nodad")
        sh("ip", "-n", G, "addr", "add", "198.51.100.1/26", "dev", "g0")
        sh("ip", "-n", G, "addr", "add", "192.0.2.1/24", "dev", "g1")
        sh("ip", "-n", G, "addr", "add", "2001:db8:2::1/64", "dev", "g1", "nodad")
        for d in ("g0", "g1"):
            sh("ip", "-n", G, "link", "set", d, "up")
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", "net.ipv4.ip_forward=1", ns=G)
        # Server: IPv4 (and IPv6 for the kernel6 baseline).
        sh("ip", "-n", S, "addr", "add", "192.0.2.2/24", "dev", "s0")
        sh("ip", "-n", S, "addr", "add", "2001:db8:2::2/64", "dev", "s0", "nodad")
        sh("ip", "-n", S, "link", "set", "s0", "up")
        sh("ip", "-n", S, "route", "add", "default", "via", "192.0.2.1")
        sh("ip", "-n", S, "-6", "route", "add", "default", "via", "2001:db8:2::1")
        # Neighbours resolved up front, so no test pays for the first NDP/ARP.
        sh("ping", "-c1", "-W2", "2001:db8:1::1", ns=C, capture=True, check=False)
        sh("ping", "-c1", "-W2", "192.0.2.1", ns=S, capture=True, check=False)
        sh("ping", "-c1", "-W2", "198.51.100.1", ns=C, capture=True, check=False)
        sh("ping", "-c1", "-W2", "2001:db8:2::1", ns=S, capture=True, check=False)
        # Servers: iperf3 and nginx (a 100-byte page, no logs).
        self.procs.append(bg("iperf3", "-s", ns=S))
        www = os.path.join(self.work, "www")
        os.makedirs(www, exist_ok=True)
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write("x" * 100)
        conf = os.path.join(self.work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(
                f"""worker_processes 1; daemon off; pid {self.work}/nginx.pid; error_log /dev/null;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_timeout 0;
  server {{ listen 192.0.2.2:80 reuseport backlog=4096; listen [2001:db8:2::2]:80 reuseport backlog=4096; root {www}; }} }}
"""
            )
        self.procs.append(bg("nginx", "-c", conf, ns=S))
        time.sleep(0.5)

    def down(self):
        for p in self.procs:
            stop(p)
        self.procs = []
        for n in (C, G, S):
            subprocess.run(["ip", "netns", "del", n], capture_output=True)


class Gateway:
    """One mode's gateway: start() sets it up in the gateway namespace, stop() removes it."""

    def __init__(self, mode, work):
        self.mode, self.work, self.proc = mode, work, None

    @property
    def target6(self):
        return SERVER_V6_NATIVE if self.mode == "kernel6" else SERVER_V6_TRANSLATED

    @property
    def target(self):
        return SERVER_V4_NATIVE if self.mode == "kernel4" else self.target6

    def start(self):
        m = self.mode
        if m.startswith("nat64d"):
            # One client host stands in for many: wrk opens tens of thousands of
            # connections, each kept TCP_TRANS (4 min) after it closes.
            conf = os.path.join(self.work, "nat64d.toml")
            with open(conf, "w") as f:
                f.write("[nat.limits]\nmax_sessions = 2097152\nsessions_per_host = 2097152\n"
                        "sessions_per_net64 = 2097152\nbibs_per_host = 65536\n")
                if m == "nat64d-blocks":
                    # One client host: enough blocks for its TCP_TRANS backlog of closed connections.
                    f.write("[nat.ports]\nmode = \"blocks\"\nblock_size = 512\nmax_blocks = 120\n")
                if m in ("nat64d-log", "nat64d-blocks"):
                    f.write(f"[mapping_log]\nfile = \"{self.work}/{m}-mapping.jsonl\"\n")
                if m == "nat64d-xdp-generic":
                    f.write("[xdp]\nattach = \"generic\"\n")
            args = [os.path.join(ROOT, "target/release/nat64d"), "--config", conf, "--pool6", PREFIX, "--pool4", POOL4,
                    "--control-socket", os.path.join(self.work, "ctl.sock")]
            if m == "nat64d-nooff":
                args += ["--no-offload"]
            if m == "nat64d-q1":
                args += ["--queues", "1"]
            if m == "nat64d-plain":
                args += ["--no-io-uring"]
            if m.startswith("nat64d-xdp"):
                args += ["--dataplane", "xdp", "--xdp-ipv6", "g0", "--xdp-ipv4", "g1"]
                xdp_checksums(True)
            sh("ip", "-n", S, "route", "replace", "203.0.113.0/24", "via", "192.0.2.1")
            log = os.path.join(self.work, f"{m}.log")
            self.proc = bg(*args, ns=G, log=log)
            if m.startswith("nat64d-xdp"):
                wait_for(lambda: "translating" in open(log).read())
                napi_threaded(m == "nat64d-xdp-threaded")
            else:
                wait_for(lambda: "UP" in sh("ip", "-n", G, "link", "show", "nat64", capture=True, check=False))
        elif m == "tayga":
            conf = os.path.join(self.work, "tayga.conf")
            with open(conf, "w") as f:
                f.write(f"tun-device nat64t\nipv4-addr 198.51.100.65\nprefix {PREFIX}\n"
                        f"dynamic-pool {TAYGA_POOL}\ndata-dir {self.work}/tayga\n")
            os.makedirs(os.path.join(self.work, "tayga"), exist_ok=True)
            sh("tayga", "-c", conf, "--mktun", ns=G, capture=True)
            sh("ip", "-n", G, "link", "set", "nat64t", "up")
            sh("ip", "-n", G, "route", "add", PREFIX, "dev", "nat64t")
            sh("ip", "-n", G, "route", "add", TAYGA_POOL, "dev", "nat64t")
            rules = ("table ip nb {\n chain post {\n  type nat hook postrouting priority 100;\n"
                     f'  oifname "g1" ip saddr {TAYGA_POOL} masquerade\n }}\n}}\n')
            p = subprocess.run(["ip", "netns", "exec", G, "nft", "-f", "-"], input=rules, text=True, capture_output=True)
            if p.returncode:
                raise RuntimeError(f"nft: {p.stderr}")
            self.proc = bg("tayga", "-c", conf, "-n", ns=G, log=os.path.join(self.work, "tayga.log"))
            time.sleep(0.5)
        # kernel4 / kernel6: nothing to start.
        # Warm the path (and, for NAT64, make the first session).
        ping = ["ping", "-c", "1", "-W", "2", self.target]
        wait_for(lambda: sh(*ping, ns=C, capture=True, check=False).find(" 0% packet loss") >= 0, secs=10)

    def stop(self):
        stop(self.proc)
        self.proc = None
        if self.mode == "tayga":
            subprocess.run(["ip", "netns", "exec", G, "nft", "delete", "table", "ip", "nb"], capture_output=True)
            subprocess.run(["ip", "-n", G, "link", "del", "nat64t"], capture_output=True)
        if self.mode.startswith("nat64d-xdp"):
            xdp_checksums(False)
        if self.mode.startswith("nat64d"):
            subprocess.run(["ip", "-n", S, "route", "del", "203.0.113.0/24"], capture_output=True)
            wait_for(lambda: sh("ip", "-n", G, "link", "show", "nat64", capture=True, check=False) == "", secs=5)

    def cpu_ticks(self):
        if not self.proc:
            return None
        # `ip netns exec` execs the program, so the PID is the translator's.
        try:
            return cpu_ticks(self.proc.pid)
        except OSError:
            return None


def napi_threaded(on):
    """nat64d-xdp-threaded: the gateway's veth receive (the XDP program and
    the copy into the UMEM) in a kernel thread, not in the sender's softirq."""
    for dev in ("g0", "g1"):
        sh("sh", "-c", f"echo {1 if on else 0} > /sys/class/net/{dev}/threaded", ns=G)


def xdp_checksums(complete):
    """veth hands its peer the local stack's partial checksums, which an
    AF_XDP socket cannot see are partial: for the XDP mode the client and
    server send complete ones (a real NIC's frames always carry them)."""
    for ns, dev in ((C, "c0"), (S, "s0")):
        sh("ethtool", "-K", dev, "tx", "off" if complete else "on", ns=ns, capture=True)


def cpu_ticks(pid):
    """CPU time (user + system) of a process so far, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def need_root_and_tools(script, why, install, packages, tools):
    """Exit unless root; apt-get the packages first with --install; exit
    naming the first tool still missing. Shared with dns_bench.py."""
    if os.geteuid() != 0:
        sys.exit(f"{script}: needs root ({why})")
    if install:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True)
    for tool in tools:
        if not shutil.which(tool):
            sys.exit(f"{script}: {tool} is missing (run with --install)")


def wait_for(cond, secs=10):
    end = time.time() + secs
    while time.time() < end:
        try:
            if cond():
                return True
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError("timed out waiting for the gateway")


def iperf(gw, secs, extra):
    """One iperf3 run; retried (up to 3 times) when iperf3 reports an error."""
    err = None
    for _ in range(3):
        r = subprocess.run(["ip", "netns", "exec", C, "iperf3", "-c", gw.target, "-t", str(secs), "-J",
                            "--connect-timeout", "3000", *extra], capture_output=True, text=True, timeout=secs + 30)
        try:
            j = json.loads(r.stdout)
        except json.JSONDecodeError:
            j = {"error": r.stdout[-300:] + r.stderr[-300:]}
        if "error" not in j and "end" in j:
            return j
        err = j.get("error")
        print(f"   iperf3 {' '.join(extra)}: {err}; retrying", file=sys.stderr, flush=True)
        time.sleep(2)
    raise RuntimeError(f"iperf3 {' '.join(extra)} against {gw.mode}: {err}")


def hash_check(gw, work):
    """16 MiB over TCP; SHA-256 equal at both ends."""
    data = random.Random(6146).randbytes(16 << 20)
    src = os.path.join(work, "blob")
    with open(src, "wb") as f:
        f.write(data)
    want = hashlib.sha256(data).hexdigest()
    bind = "::" if gw.mode != "kernel4" else "0.0.0.0"
    fam = "AF_INET6" if gw.mode != "kernel4" else "AF_INET"
    recv = bg(sys.executable, "-c",
              f"import socket,hashlib\nl=socket.socket(socket.{fam});l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
              f"l.bind(('{bind}',9009));l.listen(1);l.settimeout(30);c,_=l.accept();h=hashlib.sha256()\n"
              "while True:\n b=c.recv(1<<16)\n if not b: break\n h.update(b)\n"
              f"open('{work}/got','w').write(h.hexdigest())", ns=S)
    time.sleep(0.4)
    sh(sys.executable, "-c",
       f"import socket\nc=socket.create_connection(('{gw.target}',9009),timeout=30);c.sendall(open('{src}','rb').read());c.close()",
       ns=C, timeout=60)
    recv.wait(30)
    got = open(os.path.join(work, "got")).read().strip()
    return got == want


FIGURES = ("tcp1", "tcp4", "tcp1r", "udp64", "cps")


FIXED_PPS = [100_000]


def run_mode(gw, reps, secs, work, figures=FIGURES):
    res = {k: [] for k in ("tcp1", "tcp4", "tcp1r", "udp_pps", "udp_loss", "cps", "cpu", "cpu_pp", "fixed_loss")}
    res["hash_ok"] = hash_check(gw, work)
    hz = os.sysconf("SC_CLK_TCK")
    if figures == ("cps",):
        # New connections only (the accountability figures): alternating runs.
        for _ in range(reps):
            res["cps"].append(wrk_cps(gw, secs))
        return res
    for _ in range(reps):
        if "tcp1" in figures:
            t0, c0 = time.time(), gw.cpu_ticks()
            j = iperf(gw, secs, [])
            c1, t1 = gw.cpu_ticks(), time.time()
            res["tcp1"].append(j["end"]["sum_received"]["bits_per_second"] / 1e9)
            if c0 is not None and c1 is not None:
                res["cpu"].append(100.0 * (c1 - c0) / hz / (t1 - t0))
        if "tcp4" in figures:
            res["tcp4"].append(iperf(gw, secs, ["-P", "4"])["end"]["sum_received"]["bits_per_second"] / 1e9)
        if "tcp1r" in figures:
            res["tcp1r"].append(iperf(gw, secs, ["-R"])["end"]["sum_received"]["bits_per_second"] / 1e9)
        if "udp64" in figures:
            u = iperf(gw, secs, ["-u", "-b", "0", "-l", "64"])["end"]["sum"]
            res["udp_pps"].append((u["packets"] - u["lost_packets"]) / u["seconds"])
            res["udp_loss"].append(u["lost_percent"])
            # A fixed rate of 64-byte packets: iperf3's -b counts the payload's bits.
            c0 = gw.cpu_ticks()
            u = iperf(gw, secs, ["-u", "-b", str(FIXED_PPS[0] * 64 * 8), "-l", "64"])["end"]["sum"]
            c1 = gw.cpu_ticks()
            delivered = u["packets"] - u["lost_packets"]
            if c0 is not None and c1 is not None and delivered:
                res["cpu_pp"].append((c1 - c0) / hz / delivered * 1e6)
            res["fixed_loss"].append(u["lost_percent"])
        if "cps" in figures:
            res["cps"].append(wrk_cps(gw, secs))
    return res


def wrk_cps(gw, secs):
    url = f"http://[{gw.target}]/" if ":" in gw.target else f"http://{gw.target}/"
    w = sh("wrk", "-t1", "-c32", f"-d{secs}s", "-H", "Connection: close", url, ns=C, capture=True,
           timeout=secs + 30)
    rps = [float(l.split()[1]) for l in w.splitlines() if l.startswith("Requests/sec:")]
    return rps[0] if rps else 0.0


def med(v):
    return statistics.median(v) if v else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="nat64d,tayga,kernel6,kernel4")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--figures", default="all", help="comma-separated subset of tcp1,tcp4,tcp1r,udp64 (with cpu_pp),cps; 'all' (default)")
    ap.add_argument("--install", action="store_true", help="apt-get install the tools first")
    ap.add_argument("--fixed-pps", type=int, default=100_000, help="offered rate for the CPU-per-packet figure")
    ap.add_argument("--json", help="also write the raw results here")
    a = ap.parse_args()
    FIXED_PPS[0] = a.fixed_pps
    need_root_and_tools("bench.py", "network namespaces, TUN devices", a.install,
                        ["iproute2", "iperf3", "nginx-light", "wrk", "tayga", "nftables", "iputils-ping", "ethtool"],
                        ["iperf3", "wrk", "nginx", "tayga", "nft", "ethtool"])
    if any(m.startswith("nat64d") for m in a.modes.split(",")):
        subprocess.run(["cargo", "build", "--release", "--bin", "nat64d", "--bin", "nat64ctl"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="nat64d-bench-")
    lab = Lab(work)
    results = {}
    try:
        lab.up()
        for m in a.modes.split(","):
            gw = Gateway(m, work)
            print(f"== {m}", file=sys.stderr, flush=True)
            try:
                gw.start()
                figs = FIGURES if a.figures == "all" else tuple(f for f in FIGURES if f in a.figures.split(","))
                r = run_mode(gw, a.reps, a.secs, work, figs)
                # A mode listed twice (alternating runs on a noisy machine) pools its runs.
                if m in results:
                    for k, v in r.items():
                        if isinstance(v, list):
                            results[m][k].extend(v)
                else:
                    results[m] = r
                if m in ("nat64d-log", "nat64d-blocks"):
                    st = json.loads(subprocess.run([os.path.join(ROOT, "target/release/nat64ctl"), "--socket",
                                                    os.path.join(work, "ctl.sock"), "stats", "--json"],
                                                   capture_output=True, text=True).stdout or "{}")
                    ml = st.get("mapping_log") or {}
                    results[m]["log_records"] = ml.get("records")
                    results[m]["log_lost"] = ml.get("lost")
                    print(f"   {m}: mapping log {ml.get('records')} records, {ml.get('lost')} lost", file=sys.stderr)
            except Exception:
                log = os.path.join(work, f"{m}.log")
                if os.path.exists(log):
                    print(f"--- {log} ---\n" + open(log).read()[-3000:], file=sys.stderr)
                    ctl = os.path.join(ROOT, "target/release/nat64ctl")
                    for what in (["stats"], ["sessions"]):
                        r = subprocess.run([ctl, "--socket", os.path.join(work, "ctl.sock"), *what],
                                           capture_output=True, text=True)
                        print(r.stdout + r.stderr, file=sys.stderr)
                raise
            finally:
                gw.stop()
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    for m, r in results.items():
        if r.get("log_records") is not None:
            print(f"{m}: mapping log records {r['log_records']}, lost {r['log_lost']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    print_table(results, a)


def print_table(results, a):
    rows = [("tcp1", "TCP 1 stream, Gbit/s"), ("tcp4", "TCP 4 streams, Gbit/s"), ("tcp1r", "TCP 1 stream reverse, Gbit/s"),
            ("udp_pps", "UDP 64 B delivered, kpps"), ("udp_loss", "UDP 64 B loss, %"), ("cps", "new TCP conn/s (wrk+nginx)"),
            ("cpu", "translator CPU in tcp1, % of a core"),
            ("cpu_pp", f"CPU per packet at {FIXED_PPS[0] // 1000}k pps, us"),
            ("fixed_loss", f"loss at {FIXED_PPS[0] // 1000}k pps, %")]
    modes = list(results)
    runs = max(len(results[m]["cps"]) for m in modes)
    print(f"\nmedians of {runs} runs of {a.secs} s; {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}\n")
    head = "| figure | " + " | ".join(modes)
    ratios = []
    if "nat64d" in results and "tayga" in results:
        ratios.append(("nat64d", "tayga"))
    if "nat64d" in results and "kernel6" in results:
        ratios.append(("nat64d", "kernel6"))
    for m in ("nat64d-log", "nat64d-blocks"):
        if m in results and "nat64d" in results:
            ratios.append((m, "nat64d"))
    for x in ("nat64d-xdp", "nat64d-xdp-threaded"):
        for y in ("tayga", "kernel6", "nat64d"):
            if x in results and y in results:
                ratios.append((x, y))
    if "nat64d-xdp-threaded" in results and "nat64d-xdp" in results:
        ratios.append(("nat64d-xdp-threaded", "nat64d-xdp"))
    if "nat64d-xdp-generic" in results and "nat64d-xdp" in results:
        ratios.append(("nat64d-xdp-generic", "nat64d-xdp"))
    head += "".join(f" | {x}/{y}" for x, y in ratios) + " |"
    print(head)
    print("|" + "---|" * (1 + len(modes) + len(ratios)))
    for key, label in rows:
        vals = []
        for m in modes:
            v = med(results[m][key])
            vals.append(v / 1000 if key == "udp_pps" else v)
        line = f"| {label} | " + " | ".join("-" if v != v else f"{v:.2f}" for v in vals)
        for x, y in ratios:
            vx, vy = med(results[x][key]), med(results[y][key])
            line += " | " + ("-" if key in ("udp_loss", "cpu", "fixed_loss") or not vy or vx != vx else f"{vx / vy:.2f}x")
        print(line + " |")
    print("| data hashes equal | " + " | ".join("yes" if results[m]["hash_ok"] else "NO" for m in modes)
          + " |" * (len(ratios) + 1))


if __name__ == "__main__":
    main()
