"""Tables (printed and in RESULTS.md), results.json and the throughput chart."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from benchmarks.results_file import KEEP_MARKER, with_kept_sections
from benchmarks.runners import BASELINE, RUNNERS


@dataclass
class Table:
    key: str
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"title": self.title, "columns": self.columns, "rows": self.rows, "notes": self.notes}


def _name(key: str) -> str:
    return RUNNERS[key].name if key in RUNNERS else key


def _f(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)


def render_text(table: Table) -> str:
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    def line(cells: list[str]) -> str:
        return " | ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))

    out = [f"== {table.title} ==", line(table.columns), "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in table.rows]
    out += [f"  note: {n}" for n in table.notes]
    return "\n".join(out)


def render_markdown(table: Table) -> str:
    out = [f"### {table.title}", "", "| " + " | ".join(table.columns) + " |"]
    out.append("|" + "|".join([" --- "] + [" ---: "] * (len(table.columns) - 1)) + "|")
    out += ["| " + " | ".join(row) + " |" for row in table.rows]
    if table.notes:
        out.append("")
        out += [f"- {n}" for n in table.notes]
    return "\n".join(out)


# ----- the tables ------------------------------------------------------------------------------------------


def throughput_table(results: dict) -> Table | None:
    thr = results.get("throughput") or {"rows": {}}
    if not thr["rows"] and not results.get("skipped"):
        return None
    n = results["corpus"]["n_texts"]
    base = thr["rows"].get(BASELINE)
    t = Table(
        "throughput",
        f"Throughput: {n} texts, batch {results['settings']['batch_size']}, {results['settings']['threads']} threads, "
        f"median of {results['settings']['repeats']} interleaved round(s)",
        ["variant", "texts/s", "real tok/s", "padded/real", "x st-torch", "cos min", "cos mean", "runs (s)"],
    )
    for key, row in thr["rows"].items():
        ratio = row["texts_per_s"] / base["texts_per_s"] if base else None
        t.rows.append(
            [
                _name(key),
                _f(row["texts_per_s"], ".1f"),
                _f(row["real_tokens_per_s"], ",.0f"),
                _f(row["pad_ratio"], ".2f"),
                _f(ratio, ".2f"),
                _f(row.get("cos_min"), ".6f"),
                _f(row.get("cos_mean"), ".6f"),
                " ".join(f"{s:.1f}" for s in row["seconds"]),
            ]
        )
    t.notes.append("cos = cosine of each text's embedding to sentence-transformers torch fp32's (min and mean over the corpus)")
    t.notes.append(
        "padded/real = token positions computed / real tokens: lightembed exact (sorts by token count); "
        "sentence-transformers estimated with its rule (sorts by characters); fastembed estimated (no sorting)"
    )
    for key, reason in results.get("skipped", {}).items():
        t.notes.append(f"skipped {_name(key)}: {reason}")
    for key, notes in results.get("runner_notes", {}).items():
        for note in notes:
            t.notes.append(f"{_name(key)}: {note}")
    return t


def int8_table(results: dict) -> Table | None:
    """Every int8 mode side by side: speed, drift, batch invariance and Lee rho."""
    pick = results.get("int8_choice")
    rows = results["throughput"]["rows"]
    keys = [k for k in (*(pick["candidates"] if pick else ()), "le_static") if k in rows]
    if not keys:
        return None
    t = Table(
        "int8",
        "int8 modes (lightembed)",
        ["file", "texts/s", "x fp32", "cos vs torch min / mean", "alone vs batched min", "Lee rho"],
    )
    fp32 = rows.get("le_fp32", {}).get("texts_per_s")
    inv = (results.get("invariance") or {}).get("rows", {})
    for key in keys:
        row = rows[key]
        rho = results.get("quality", {}).get("rho", {}).get(key)
        alone = (inv.get(key) or {}).get("alone_vs_batched")
        t.rows.append([
            _name(key),
            _f(row["texts_per_s"], ".1f"),
            _f(row["texts_per_s"] / fp32 if fp32 else None, ".2f"),
            f"{_f(row.get('cos_min'), '.4f')} / {_f(row.get('cos_mean'), '.4f')}",
            _f(alone[0] if alone else None, ".6f"),
            _f(rho, ".4f"),
        ])
    if pick:
        t.notes.append(pick["summary"])
    return t


def flops_table(results: dict) -> Table | None:
    fl = results.get("flops")
    if not fl:
        return None
    cols = ["variant", "real tok/s", "GFLOP/s", "AVX2 peak", "of AVX2 peak", "AVX2-bound tok/s"]
    has512 = any("avx512_gflops" in r for r in fl["rows"].values())
    if has512:
        cols += ["AVX-512 peak", "of AVX-512 peak"]
    t = Table("flops", "fp32 FLOP bound (useful FLOPs of the corpus' real tokens)", cols)
    for key, r in fl["rows"].items():
        row = [
            _name(key),
            _f(r["real_tokens"] / r["seconds"], ",.0f"),
            _f(r["achieved_gflops"], ".1f"),
            _f(r["avx2_gflops"], ".0f"),
            _f(r["fraction_avx2"] * 100, ".1f") + "%",
            _f(r["bound_tokens_per_s_avx2"], ",.0f"),
        ]
        if has512:
            row += [_f(r.get("avx512_gflops"), ".0f"), _f((r.get("fraction_avx512") or 0) * 100, ".1f") + "%"]
        t.rows.append(row)
    any_row = next(iter(fl["rows"].values()))
    dims = any_row["dims"]
    t.notes.append(
        f"model: {dims['layers']} layers, hidden {dims['hidden']}, ffn {dims['ffn']}: {any_row['matmul_params']:,} "
        f"matmul parameters; corpus: {any_row['real_tokens']:,} real tokens, {any_row['useful_gflop']:,.0f} GFLOP "
        f"= {any_row['gflop_per_token'] * 1000:.1f} MFLOP/token incl. attention"
    )
    t.notes.append(
        f"peak = {any_row['cores']} cores x 2 FMA units x 8 floats (AVX2) x 2 FLOP x {any_row['clock_ghz']:.2f} GHz "
        "(/proc/cpuinfo 'cpu MHz')"
        + ("; AVX-512 peak uses 16 floats and assumes 2 AVX-512 FMA units (some Xeons have 1)" if has512 else "")
    )
    t.notes.append(f"padded FLOPs computed by lightembed fp32 (sorted batches): {fl.get('padded_gflop', 0):,.0f} GFLOP")
    return t


def coldstart_table(results: dict) -> Table | None:
    cs = results.get("coldstart")
    if not cs:
        return None
    t = Table(
        "coldstart",
        "Cold start: new process imports, loads and encodes one sentence (median)",
        ["variant", "total s", "import s", "load s", "1st encode s", "RSS loaded MB", "runs"],
    )
    for key, r in cs.items():
        if "skipped" in r:
            t.notes.append(f"skipped {_name(key)}: {r['skipped']}")
            continue
        t.rows.append(
            [
                _name(key),
                _f(r["wall_s"], ".2f"),
                _f(r["import_s"], ".2f"),
                _f(r["load_s"], ".2f"),
                _f(r["encode_s"], ".3f"),
                _f(r["rss_loaded_mb"], ".0f"),
                str(r["runs"]),
            ]
        )
    t.notes.append("total = wall time from spawning the interpreter to its exit (interpreter start-up included)")
    return t


def rss_table(results: dict) -> Table | None:
    rs = results.get("rss")
    if not rs:
        return None
    n = next((r.get("n_texts") for r in rs.values() if "n_texts" in r), "?")
    t = Table(
        "rss",
        f"Peak RSS encoding {n} texts (one fresh process each)",
        ["variant", "peak RSS MB", "peak before encode MB", "RSS after load MB", "encode s"],
    )
    for key, r in rs.items():
        if "skipped" in r:
            t.notes.append(f"skipped {_name(key)}: {r['skipped']}")
            continue
        t.rows.append([_name(key), _f(r["peak_rss_mb"], ".0f"), _f(r.get("peak_before_encode_mb"), ".0f"),
                       _f(r["rss_loaded_mb"], ".0f"), _f(r["encode_s"], ".1f")])
    t.notes.append("peak = the process' peak resident set size (/proc VmHWM; imports and model included); "
                   "peak before encode = the same after import and load (a load-time spike shows here)")
    return t


def latency_table(results: dict) -> Table | None:
    lat = results.get("latency")
    if not lat:
        return None
    first = next((r for r in lat.values() if "n" in r), {"n": 0})
    t = Table(
        "latency",
        f"Batch-1 latency: {first['n']} short queries, one per encode() call, each library in its own process "
        f"({first.get('rounds', 1)} interleaved round(s) of processes)",
        ["variant", "p50 ms", "p99 ms", "mean ms"],
    )
    for key, r in lat.items():
        if "skipped" in r:
            t.notes.append(f"skipped {_name(key)}: {r['skipped']}")
            continue
        t.rows.append([_name(key), _f(r["p50_ms"], ".2f"), _f(r["p99_ms"], ".2f"), _f(r["mean_ms"], ".2f")])
    return t


def quality_table(results: dict) -> Table | None:
    q = results.get("quality")
    if not q:
        return None
    if "skipped" in q:
        return Table("quality", "Lee corpus: Spearman with human similarity ratings", ["variant"], notes=[q["skipped"]])
    rho = q["rho"]
    fp32 = rho.get("le_fp32")
    torch = rho.get(BASELINE)
    t = Table(
        "quality",
        f"Lee corpus: Spearman of cosine scores with human ratings ({q['pairs']} pairs of {q['documents']} documents)",
        ["variant", "Spearman rho", "delta vs lightembed fp32", "delta vs torch", "int8 within 0.01"],
    )
    for key, value in rho.items():
        is_int8 = "int8" in key or key == "le_static"
        within = "-"
        if is_int8 and fp32 is not None:
            within = "yes" if abs(value - fp32) <= 0.01 else "NO"
        t.rows.append(
            [
                _name(key),
                _f(value, ".4f"),
                _f(value - fp32 if fp32 is not None else None, "+.4f"),
                _f(value - torch if torch is not None else None, "+.4f"),
                within,
            ]
        )
    t.notes.append(f"human ratings: {q['ratings_file']} (50x50 matrix, upper triangle = 1,225 pair ratings, scaled 0-1)")
    if q["pairs"] != 1225:
        t.notes.append(f"quick mode: first {q['documents']} documents only ({q['pairs']} pairs) - not the full benchmark")
    t.notes.append("Spearman implemented in NumPy (ranks with ties averaged)")
    return t


def invariance_table(results: dict) -> Table | None:
    inv = results.get("invariance")
    if not inv:
        return None
    t = Table(
        "invariance",
        f"Batch invariance: {inv['n_short']} short texts alone vs in a batch of {inv['batch']} (lightembed)",
        ["variant", "alone~batched min", "alone~batched mean", "alone~fp32 min", "alone~fp32 mean", "batched~fp32 min", "batched~fp32 mean"],
    )
    for key, r in inv["rows"].items():
        row = [_name(key), _f(r["alone_vs_batched"][0], ".6f"), _f(r["alone_vs_batched"][1], ".6f")]
        for part in ("alone_vs_fp32", "batched_vs_fp32"):
            vals = r.get(part)
            row += [_f(vals[0], ".6f"), _f(vals[1], ".6f")] if vals else ["-", "-"]
        t.rows.append(row)
    t.notes.append("fp32 = lightembed fp32 with each text alone; dynamic int8 quantizes activations per tensor, so the "
                   "other rows of a batch (and their padding) move a text's scale")
    return t


def install_table(results: dict) -> Table | None:
    inst = results.get("install_size")
    if not inst:
        return None
    t = Table("install", "Installed size: pip install into a fresh venv (site-packages)", ["stack", "added MB", "packages", "largest"])
    for label, r in inst.items():
        if "error" in r:
            t.notes.append(f"{label}: {r['error']}")
            continue
        largest = ", ".join(f"{n} {mb:.0f}" for n, mb in r["largest"][:4])
        t.rows.append([label, _f(r["added_mb"], ".1f"), str(r["packages"]), largest])
        if r.get("torch"):
            t.notes.append(f"{label}: {r['torch']}")
    t.notes.append("added = site-packages after the install minus the empty venv's (pip itself)")
    return t


def corpus_table(results: dict) -> Table:
    c = results["corpus"]
    t = Table("corpus", "Corpus", ["corpus", "texts", "real tokens", "<=16 tok", "17-64", "65-255", "truncated at max"])
    t.rows.append(
        [
            c["path"],
            str(c["n_texts"]),
            f"{c['real_tokens']:,}",
            str(c["buckets"][0]),
            str(c["buckets"][1]),
            str(c["buckets"][2]),
            str(c["buckets"][3]),
        ]
    )
    t.notes.append("benchmarks.corpus.mixed(): Guardian headlines, Rotten Tomatoes snippets, 10% Lee background news paragraphs")
    t.notes.append(f"tokens counted with the model's tokenizer, truncated at max_seq_length {c['max_seq_length']}")
    return t


def all_tables(results: dict) -> list[Table]:
    makers = [corpus_table, throughput_table, int8_table, flops_table, quality_table, invariance_table,
              coldstart_table, latency_table, rss_table, install_table]
    return [t for t in (m(results) for m in makers) if t is not None]


# ----- files -----------------------------------------------------------------------------------------------


def write_chart(results: dict, path: Path) -> Path | None:
    """The throughput bar chart, or None (with a line in skipped_steps) when it cannot be drawn."""
    rows = (results.get("throughput") or {}).get("rows") or {}
    if not rows:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        results.setdefault("skipped_steps", []).append("chart: matplotlib is not installed (pip install matplotlib)")
        return None
    keys = list(rows)
    medians = [rows[k]["texts_per_s"] for k in keys]
    n = results["corpus"]["n_texts"]
    lows = [m - n / max(rows[k]["seconds"]) for k, m in zip(keys, medians)]
    highs = [n / min(rows[k]["seconds"]) - m for k, m in zip(keys, medians)]
    colors = {"lightembed": "#2a9d8f", "sentence-transformers": "#e76f51", "fastembed": "#6c757d"}
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(keys) + 1.6))
    y = list(range(len(keys)))[::-1]
    ax.barh(y, medians, xerr=[lows, highs], color=[colors.get(RUNNERS[k].library, "#999") for k in keys], capsize=3)
    ax.set_yticks(y, [_name(k) for k in keys], fontsize=8)
    for yi, m in zip(y, medians):
        ax.text(m, yi, f" {m:.0f}", va="center", fontsize=8)
    if BASELINE in rows:
        ax.axvline(rows[BASELINE]["texts_per_s"], color="#e76f51", ls="--", lw=0.8)
    s = results["settings"]
    ax.set_xlabel("texts / s (median; bars: min-max of rounds)")
    ax.set_title(
        f"all-MiniLM-L6-v2, {n} mixed-length texts, batch {s['batch_size']}, {s['threads']} threads\n"
        f"{results['machine']['cpu']['model']}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def results_markdown(results: dict, tables: Sequence[Table], chart: Path | None) -> str:
    m = results["machine"]
    v = results["versions"]
    cpu = m["cpu"]
    lines = [
        "# lightembed benchmark results",
        "",
        f"The part above `{KEEP_MARKER}` is written by `benchmarks/run.py`; the sections below it are written by hand "
        "and by the other benchmarks, and run.py keeps them.",
        "",
        "```",
        results["command"],
        "```",
        "",
    ]
    if results["settings"]["quick"]:
        lines += ["**Quick mode**: tiny corpus, one round, heavy steps skipped. These numbers only show the harness works.", ""]
    load = m.get("load_average_start")
    lines += [
        "## Machine",
        "",
        (f"- CPU: {cpu['model']} at {cpu['mhz']} MHz (/proc/cpuinfo), {m['usable_cores']} usable cores "
         f"of {cpu['logical_cpus']} logical CPUs"),
        f"- SIMD flags: {', '.join(cpu['flags']) or 'none found'}",
        f"- platform: {m['platform']}",
        (f"- date: {m['date']}; load average at start: {', '.join(f'{x:.2f}' for x in load) if load else '?'}; "
         f"at end: {', '.join(f'{x:.2f}' for x in results.get('load_average_end') or []) or '?'}"),
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        "- not installed: " + (", ".join(k for k, val in v.items() if not val) or "none"),
        f"- model: {results['model']['dir']} (exported by {results['model']['exporter']})",
        (f"- same settings for every library: batch size {results['settings']['batch_size']}, "
         f"{results['settings']['threads']} intra-op threads, CPUExecutionProvider"),
        "",
    ]
    if chart is not None:
        lines += [f"![throughput per variant]({chart.name})", ""]
    lines += ["## Results", ""]
    for table in tables:
        lines += [render_markdown(table), ""]
    if results.get("skipped_steps"):
        lines += ["## Steps not run", ""] + [f"- {s}" for s in results["skipped_steps"]] + [""]
    return "\n".join(lines)


def write_results(results: dict, out_dir: Path, echo=print) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = all_tables(results)
    chart = write_chart(results, out_dir / "throughput.png")
    md_path = out_dir / "RESULTS.md"
    existing = md_path.read_text() if md_path.exists() else None
    md_path.write_text(with_kept_sections(results_markdown(results, tables, chart), existing))
    json_path = out_dir / "results.json"
    payload = {k: v for k, v in results.items() if k != "_embeddings"}
    payload["tables"] = {t.key: t.as_dict() for t in tables}
    json_path.write_text(json.dumps(payload, indent=1, default=str))
    paths = {"results_md": md_path, "results_json": json_path}
    if chart:
        paths["chart"] = chart
    return paths


def write_json(path: Path | None, report: dict[str, Any]) -> None:
    """Write a benchmark's report as indented JSON at `path` (folders made); nothing when `path` is None."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
