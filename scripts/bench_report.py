#!/usr/bin/env python3
"""Turns the JSON lines of scripts/bench.sh into the results block of docs/PERFORMANCE.md.

Medians over rounds; ratios are the median of per-round ratios (gateway and direct ran next to
each other in each round). Only the text between the bench markers is replaced.
"""
import argparse
import datetime
import json
import statistics
import sys

BEGIN = "<!-- bench:begin (written by scripts/bench.sh; edit outside these markers) -->"
END = "<!-- bench:end -->"


def load(path):
    runs = {}
    splitter = {}
    with open(path) as lines:
        for line in lines:
            line = line.strip()
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if record.get("bench") == "splitter":
                splitter[record["mode"]] = record
                continue
            runs.setdefault(record["label"], []).append(record)
    return runs, splitter


def values(runs, label, key):
    return [run[key] for run in runs.get(label, []) if run.get(key) is not None]


def median(runs, label, key):
    found = values(runs, label, key)
    return statistics.median(found) if found else None


def paired_ratio(runs, scenario, upstream, key):
    gateway = values(runs, f"{scenario}/{upstream}/gateway", key)
    direct = values(runs, f"{scenario}/{upstream}/direct", key)
    ratios = [g / d for g, d in zip(gateway, direct) if d]
    return statistics.median(ratios) if ratios else None


def errors(runs):
    return sum(run.get("errors", 0) for label_runs in runs.values() for run in label_runs)


def fmt(value, digits=0):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def verdict(value, limit, at_least):
    if value is None:
        return "not measured"
    holds = value >= limit if at_least else value <= limit
    return "**holds**" if holds else "**missed**"


def report(runs, splitter, args):
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rounds = max((len(label_runs) for label_runs in runs.values()), default=0)
    rows = []
    add = rows.append
    add("| Measure | Upstream | Gateway | Direct | Gateway/direct | Target | Verdict |")
    add("|---|---|---:|---:|---:|---|---|")
    for upstream, name in (("plain", "plaintext"), ("tls", "STARTTLS")):
        ratio = paired_ratio(runs, "throughput", upstream, "stanzas_per_sec")
        target, check = ("≥ 0.6×", verdict(ratio, 0.6, True)) if upstream == "plain" else ("report", "–")
        add(
            f"| Echo throughput, stanzas/s (200 sessions × 500, window 10) | {name} "
            f"| {fmt(median(runs, f'throughput/{upstream}/gateway', 'stanzas_per_sec'))} "
            f"| {fmt(median(runs, f'throughput/{upstream}/direct', 'stanzas_per_sec'))} "
            f"| {fmt(ratio, 2)}× | {target} | {check} |"
        )
    for upstream, name in (("plain", "plaintext"), ("tls", "STARTTLS")):
        for key, percentile in (("rtt_p50_us", "p50"), ("rtt_p99_us", "p99")):
            ratio = paired_ratio(runs, "rtt-pinned", upstream, key)
            target, check = ("≤ 4× direct p99", verdict(ratio, 4.0, False)) if key == "rtt_p99_us" else ("report", "–")
            add(
                f"| RTT {percentile}, µs, pinned to 1 CPU (1 session, window 1, 3000 stanzas) | {name} "
                f"| {fmt(median(runs, f'rtt-pinned/{upstream}/gateway', key))} "
                f"| {fmt(median(runs, f'rtt-pinned/{upstream}/direct', key))} "
                f"| {fmt(ratio, 2)}× | {target} | {check} |"
            )
    for upstream, name in (("plain", "plaintext"), ("tls", "STARTTLS")):
        ratio = paired_ratio(runs, "setup", upstream, "setup_rate")
        target, check = ("≥ 0.35×", verdict(ratio, 0.35, True)) if upstream == "plain" else ("report", "–")
        add(
            f"| Setup rate, sessions/s (2000 sessions, 64 at a time) | {name} "
            f"| {fmt(median(runs, f'setup/{upstream}/gateway', 'setup_rate'))} "
            f"| {fmt(median(runs, f'setup/{upstream}/direct', 'setup_rate'))} "
            f"| {fmt(ratio, 2)}× | {target} | {check} |"
        )
        add(
            f"| Setup time p50 / p99, ms | {name} "
            f"| {fmt(median(runs, f'setup/{upstream}/gateway', 'setup_p50_ms'), 1)} / "
            f"{fmt(median(runs, f'setup/{upstream}/gateway', 'setup_p99_ms'), 1)} "
            f"| {fmt(median(runs, f'setup/{upstream}/direct', 'setup_p50_ms'), 1)} / "
            f"{fmt(median(runs, f'setup/{upstream}/direct', 'setup_p99_ms'), 1)} | | report | – |"
        )
    for upstream, name, limit in (("plain", "plaintext", 16), ("tls", "STARTTLS", 48)):
        label = f"memory/{upstream}/gateway"
        per_session = median(runs, label, "rss_per_session_bytes")
        kib = per_session / 1024 if per_session is not None else None
        sessions = median(runs, label, "ok_sessions")
        add(
            f"| Memory per idle authenticated session, KiB (RSS delta / {fmt(sessions)} sessions) | {name} "
            f"| {fmt(kib, 1)} | | | ≤ {limit} KiB | {verdict(kib, limit, False)} |"
        )
        add(
            f"| Gateway VmRSS / VmHWM with those sessions, MiB | {name} "
            f"| {fmt(median(runs, label, 'vm_rss_idle_kib') and median(runs, label, 'vm_rss_idle_kib') / 1024, 1)} / "
            f"{fmt(median(runs, label, 'vm_hwm_kib') and median(runs, label, 'vm_hwm_kib') / 1024, 1)} | | | report | – |"
        )
    one = splitter.get("one-read")
    for mode in ("one-read", "1-byte", "random-1..4096"):
        record = splitter.get(mode)
        if record is None:
            continue
        ratio = record["ratio_to_one_read"]
        target, check = ("≤ 4× one read", verdict(ratio, 4.0, False)) if mode == "1-byte" else ("report", "–")
        add(
            f"| Splitter, 256 KiB element, {mode} ({record['reads']} reads), ns/byte | | "
            f"{record['ns_per_byte']:.2f} | | {ratio:.2f}× one read | {target} | {check} |"
        )
    if one is None:
        add("| Splitter | | not measured | | | ≤ 4× | – |")
    lines = [
        BEGIN,
        f"Command: `{args.command}` · Date: {date} · Machine: {args.machine} · Commit: {args.commit} · "
        f"Rounds: {rounds} (medians; ratios are medians of per-round gateway/direct ratios) · "
        f"Errors in all runs: {errors(runs)}",
        "",
        *rows,
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
    args = parser.parse_args()
    runs, splitter = load(args.results)
    block = report(runs, splitter, args)
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
