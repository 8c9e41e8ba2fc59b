#!/usr/bin/env python3
"""Turns the JSON lines of scripts/bench.sh into the results block of docs/PERFORMANCE.md.

Medians over rounds; ratios are the median of per-round ratios (the gateway, the floor relay
and direct TCP ran one after the other in each round). Instruction counts come from single
callgrind runs (they do not depend on the machine's load). Only the text between the bench
markers is replaced.
"""
import argparse
import datetime
import json
import statistics
import sys

BEGIN = "<!-- bench:begin (written by scripts/bench.sh; edit outside these markers) -->"
END = "<!-- bench:end -->"

UPSTREAMS = (("plain", "plaintext"), ("tls", "STARTTLS"))
# The windows of the whole-process instruction counts: 10 as in the throughput runs (stanzas
# batch into shared reads, writes and TLS records as timing allows, so counts under callgrind
# vary from run to run, most with STARTTLS), and 1 (every stanza its own read, write and record:
# the same from run to run).
INSTRUCTION_WINDOWS = ((10, "window 10"), (1, "window 1, unbatched"))

# Issue 13's targets, as (ratio or value, limit, at_least).
THROUGHPUT_VS_FLOOR = 0.8
CPU_PER_STANZA_VS_FLOOR = 1.5
SETUP_VS_FLOOR = 0.9
RTT_P99_VS_FLOOR = 1.3
MEMORY_KIB = {"plain": 12, "tls": 16}
SPLITTER_ONE_BYTE = 3.0


def load(path):
    runs = {}
    splitter = {}
    instructions = {}
    relay_instructions = {}
    with open(path) as lines:
        for line in lines:
            line = line.strip()
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            bench = record.get("bench")
            if bench == "splitter":
                splitter[record["mode"]] = record
            elif bench == "instructions":
                instructions[record["case"]] = record
            elif bench == "relay-instructions":
                # Window 10 unless the record says (results from before the window-1 counts).
                window = record.get("window", 10)
                relay_instructions[(record["relay"], record["upstream"], window)] = record
            elif "label" in record:
                runs.setdefault(record["label"], []).append(record)
    return runs, splitter, instructions, relay_instructions


def values(runs, label, key):
    return [run[key] for run in runs.get(label, []) if run.get(key) is not None]


def median(runs, label, key):
    found = values(runs, label, key)
    return statistics.median(found) if found else None


def paired_ratios(runs, scenario, upstream, key, other):
    """The gateway's value over `other`'s, round by round (the two ran in the same round)."""
    gateway = values(runs, f"{scenario}/{upstream}/gateway", key)
    against = values(runs, f"{scenario}/{upstream}/{other}", key)
    return [g / d for g, d in zip(gateway, against) if d]


def paired_ratio(runs, scenario, upstream, key, other):
    ratios = paired_ratios(runs, scenario, upstream, key, other)
    return statistics.median(ratios) if ratios else None


def errors(runs):
    return sum(run.get("errors", 0) for label_runs in runs.values() for run in label_runs)


def fmt(value, digits=0):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def times(value):
    return "–" if value is None else f"{value:.2f}×"


def verdict(value, limit, at_least, rounds=()):
    """Whether `value` (a median) is within `limit`. When the per-round values it is the median of
    (`rounds`) do not all agree, says in how many rounds the target held: a median that holds
    while some rounds missed is a target at the edge of the machine's noise, not a margin."""
    if value is None:
        return "not measured"
    within = (lambda v: v >= limit) if at_least else (lambda v: v <= limit)
    text = "**holds**" if within(value) else "**missed**"
    held = sum(1 for v in rounds if within(v))
    if 0 < held < len(rounds):
        text += f" (held in {held} of {len(rounds)} rounds)"
    return text


class Table:
    def __init__(self, runs):
        self.runs = runs
        self.rows = [
            "| Measure | Upstream | Gateway | Floor relay | Direct | Gateway / floor | Gateway / direct | Target | Verdict |",
            "|---|---|---:|---:|---:|---:|---:|---|---|",
        ]

    def add(self, measure, name, gateway, floor, direct, vs_floor, vs_direct, target="report", check="–"):
        self.rows.append(
            f"| {measure} | {name} | {gateway} | {floor} | {direct} | {vs_floor} | {vs_direct} | {target} | {check} |"
        )

    def measured(self, measure, scenario, key, digits=0, target=None, with_direct=True):
        """One row per upstream: medians of the three targets, and the paired ratios.

        `target` is (limit, at_least) on the gateway/floor ratio, or None to report only."""
        for upstream, name in UPSTREAMS:
            rounds = paired_ratios(self.runs, scenario, upstream, key, "floor")
            ratio = statistics.median(rounds) if rounds else None
            med = {t: median(self.runs, f"{scenario}/{upstream}/{t}", key) for t in ("gateway", "floor", "direct")}
            direct_ratio = paired_ratio(self.runs, scenario, upstream, key, "direct") if with_direct else None
            goal, check = ("report", "–")
            if target is not None:
                limit, at_least = target
                goal = f"{'≥' if at_least else '≤'} {limit}× floor"
                check = verdict(ratio, limit, at_least, rounds)
            self.add(
                measure,
                name,
                fmt(med["gateway"], digits),
                fmt(med["floor"], digits),
                fmt(med["direct"], digits) if with_direct else "",
                times(ratio),
                times(direct_ratio) if with_direct else "",
                goal,
                check,
            )


def baseline_table(runs, relay_instructions, name):
    """Gateway beside the baseline build (BASELINE_BIN), or no rows when there was none."""
    if not any(label.endswith("/baseline") for label in runs):
        return []
    rows = [
        f"Beside the baseline build ({name}), in the same rounds:",
        "",
        "| Measure | Upstream | Gateway | Baseline | Gateway / baseline |",
        "|---|---|---:|---:|---:|",
    ]
    measures = (
        ("Echo throughput, stanzas/s", "throughput", "stanzas_per_sec", 0),
        ("Relay CPU per echoed stanza, µs", "throughput", "stanza_cpu_us", 2),
        ("RTT p50, µs, pinned", "rtt-pinned", "rtt_p50_us", 0),
        ("RTT p99, µs, pinned", "rtt-pinned", "rtt_p99_us", 0),
        ("Setup rate, sessions/s", "setup", "setup_rate", 0),
        ("Relay CPU per session set up, µs", "setup", "setup_cpu_us", 0),
        ("Memory per idle session, bytes", "memory", "rss_per_session_bytes", 0),
    )
    for measure, scenario, key, digits in measures:
        for upstream, upstream_name in UPSTREAMS:
            gateway = median(runs, f"{scenario}/{upstream}/gateway", key)
            baseline = median(runs, f"{scenario}/{upstream}/baseline", key)
            ratio = paired_ratio(runs, scenario, upstream, key, "baseline")
            rows.append(
                f"| {measure} | {upstream_name} | {fmt(gateway, digits)} | {fmt(baseline, digits)} | {times(ratio)} |"
            )
    for upstream, upstream_name in UPSTREAMS:
        for window, what in INSTRUCTION_WINDOWS:
            gateway, baseline = (
                relay_instructions.get((relay, upstream, window)) for relay in ("gateway", "baseline")
            )
            if gateway is None or baseline is None:
                continue
            ratio = gateway["per_stanza"] / baseline["per_stanza"] if baseline["per_stanza"] else None
            rows.append(
                f"| Relay instructions per echoed stanza (callgrind, {what}) | {upstream_name} "
                f"| {fmt(gateway['per_stanza'])} | {fmt(baseline['per_stanza'])} | {times(ratio)} |"
            )
    return ["", *rows]


def bosh_table(runs):
    """BOSH sessions beside WebSocket sessions on the same gateway, measured in the same rounds
    (labels bosh-*/UPSTREAM/bosh and bosh-*/UPSTREAM/gateway)."""
    if not any(label.startswith("bosh-") and label.endswith("/bosh") for label in runs):
        return []
    rows = [
        "",
        "BOSH (XEP-0124/XEP-0206, `hold='1'`, two HTTP/1.1 connections per session) beside WebSocket "
        "on the same gateway, in the same rounds:",
        "",
        "| Measure | Upstream | BOSH | WebSocket | BOSH / WebSocket |",
        "|---|---|---|---|---|",
    ]
    measures = (
        ("Echo throughput, stanzas/s", "bosh-throughput", "stanzas_per_sec", 0, 1),
        ("HTTP responses/s while echoing", "bosh-throughput", "http_responses_per_sec", 0, 1),
        ("Gateway CPU per echoed stanza, µs", "bosh-throughput", "stanza_cpu_us", 2, 1),
        ("Echo RTT p50, µs", "bosh-throughput", "rtt_p50_us", 0, 1),
        ("Setup rate, sessions/s", "bosh-setup", "setup_rate", 0, 1),
        ("Memory per idle authenticated session, KiB", "bosh-memory", "rss_per_session_bytes", 1, 1024),
    )
    for measure, scenario, key, digits, scale in measures:
        for upstream, upstream_name in UPSTREAMS:
            bosh = median(runs, f"{scenario}/{upstream}/bosh", key)
            websocket = median(runs, f"{scenario}/{upstream}/gateway", key)
            if bosh is None and websocket is None:
                continue
            sessions = median(runs, f"{scenario}/{upstream}/bosh", "ok_sessions")
            name = f"{measure} ({fmt(sessions)} sessions)" if scenario == "bosh-memory" else measure
            ratio = paired_ratio(runs, scenario, upstream, key, "bosh")
            rows.append(
                f"| {name} | {upstream_name} | {fmt(bosh and bosh / scale, digits)} "
                f"| {fmt(websocket and websocket / scale, digits)} | {times(ratio and 1 / ratio)} |"
            )
    return rows


def report(runs, splitter, instructions, relay_instructions, args):
    date = args.date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rounds = max(
        (len(label_runs) for label, label_runs in runs.items() if not label.startswith("count-")), default=0
    )
    table = Table(runs)
    table.measured(
        "Echo throughput, stanzas/s (200 sessions × 500, window 10)",
        "throughput",
        "stanzas_per_sec",
        target=(THROUGHPUT_VS_FLOOR, True),
    )
    table.measured(
        "Relay CPU per echoed stanza (relayed both ways), µs, in those runs",
        "throughput",
        "stanza_cpu_us",
        digits=2,
        target=(CPU_PER_STANZA_VS_FLOOR, False),
        with_direct=False,
    )
    for window, what in INSTRUCTION_WINDOWS:
        for upstream, name in UPSTREAMS:
            gateway, floor = (relay_instructions.get((relay, upstream, window)) for relay in ("gateway", "floor"))
            if gateway is None and floor is None:
                continue
            per = [record["per_stanza"] if record else None for record in (gateway, floor)]
            ratio = per[0] / per[1] if per[0] is not None and per[1] else None
            table.add(
                f"Relay instructions per echoed stanza (callgrind, whole process, user space, {what})",
                name,
                fmt(per[0]),
                fmt(per[1]),
                "",
                times(ratio),
                "",
                f"≤ {CPU_PER_STANZA_VS_FLOOR}× floor",
                verdict(ratio, CPU_PER_STANZA_VS_FLOOR, False),
            )
    table.measured(
        "RTT p50, µs, pinned to 1 CPU (1 session, window 1, 3000 stanzas)", "rtt-pinned", "rtt_p50_us"
    )
    table.measured(
        "RTT p99, µs, pinned to 1 CPU (1 session, window 1, 3000 stanzas)",
        "rtt-pinned",
        "rtt_p99_us",
        target=(RTT_P99_VS_FLOOR, False),
    )
    table.measured(
        "Setup rate, sessions/s (2000 sessions, 64 at a time)",
        "setup",
        "setup_rate",
        target=(SETUP_VS_FLOOR, True),
    )
    table.measured("Setup time p50, ms", "setup", "setup_p50_ms", digits=1)
    table.measured("Setup time p99, ms", "setup", "setup_p99_ms", digits=1)
    table.measured(
        "Relay CPU per session set up, µs", "setup", "setup_cpu_us", digits=0, with_direct=False
    )
    for upstream, name in UPSTREAMS:
        per_session = {
            relay: median(runs, f"memory/{upstream}/{relay}", "rss_per_session_bytes") for relay in ("gateway", "floor")
        }
        kib = {relay: (value / 1024 if value is not None else None) for relay, value in per_session.items()}
        ratio = paired_ratio(runs, "memory", upstream, "rss_per_session_bytes", "floor")
        sessions = median(runs, f"memory/{upstream}/gateway", "ok_sessions")
        limit = MEMORY_KIB[upstream]
        table.add(
            f"Memory per idle authenticated session, KiB (RSS delta / {fmt(sessions)} sessions)",
            name,
            fmt(kib["gateway"], 1),
            fmt(kib["floor"], 1),
            "",
            times(ratio),
            "",
            f"≤ {limit} KiB",
            verdict(kib["gateway"], limit, False),
        )
        rss = {}
        for relay in ("gateway", "floor"):
            label = f"memory/{upstream}/{relay}"
            idle, hwm = median(runs, label, "vm_rss_idle_kib"), median(runs, label, "vm_hwm_kib")
            rss[relay] = f"{fmt(idle and idle / 1024, 1)} / {fmt(hwm and hwm / 1024, 1)}"
        table.add("VmRSS / VmHWM with those sessions, MiB", name, rss["gateway"], rss["floor"], "", "", "")
    for case, what in (("classify", "client message check"), ("splitter", "server element split + check")):
        record = instructions.get(case)
        if record is None:
            continue
        table.add(
            f"Instructions per chat stanza, {what} (callgrind, benches/stanza.rs)",
            "",
            fmt(record["per_stanza"]),
            "",
            "",
            "",
            "",
        )
    for mode in ("one-read", "1-byte", "random-1..4096"):
        record = splitter.get(mode)
        if record is None:
            continue
        ratio = record["ratio_to_one_read"]
        target, check = (
            (f"≤ {SPLITTER_ONE_BYTE:g}× one read", verdict(ratio, SPLITTER_ONE_BYTE, False))
            if mode == "1-byte"
            else ("report", "–")
        )
        table.add(
            f"Splitter, 256 KiB element, {mode} ({record['reads']} reads), ns/byte",
            "",
            f"{record['ns_per_byte']:.2f}",
            "",
            "",
            "",
            f"{ratio:.2f}× one read",
            target,
            check,
        )
    lines = [
        BEGIN,
        f"Command: `{args.command}` · Date: {date} · Machine: {args.machine} · Load average at the end "
        f"(1, 5, 15 min): {args.load} · Commit: {args.commit} · Rounds: {rounds} (medians; ratios are "
        f"medians of per-round ratios; a verdict whose rounds disagree says in how many it held) · "
        f"Errors in all runs: {errors(runs)}",
        "",
        "CPU times are seconds of CPU (scheduler time of every thread of the relay process, kernel "
        "included); instruction counts are user-space instructions counted by callgrind.",
        "",
        *table.rows,
        *baseline_table(runs, relay_instructions, args.baseline_name),
        *bosh_table(runs),
        END,
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("document")
    parser.add_argument("--command", required=True)
    parser.add_argument("--machine", required=True)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--load", default="not recorded")
    parser.add_argument("--baseline-name", default="", help="what BASELINE_BIN was built from")
    parser.add_argument("--date", default="", help="when the results were measured (default: now), to rewrite a report")
    args = parser.parse_args()
    block = report(*load(args.results), args)
    try:
        with open(args.document) as document:
            text = document.read()
    except FileNotFoundError:
        text = f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        _, after = rest.split(END, 1)
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(args.document, "w") as document:
        document.write(text)
    print(block)


if __name__ == "__main__":
    sys.exit(main())
