"""`foresight fit`, `foresight predict --register` and `foresight ledger verify|show|keygen|anchor`.

INPUT is a ladder (or forecast) directory — its runs/*/summary.json give compute `flops` and loss
`final_val_loss` — or any CSV with named columns.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import operator
import re
from pathlib import Path

from foresight.cli_args import float_in, int_in
from foresight.files import sha256_file
from foresight.errors import ForesightError
from foresight.scaling.laws import LAWS

ONE_VARIABLE_LAWS = tuple(name for name, law in LAWS.items() if law.n_inputs == 1)
LADDER_X, LADDER_Y = "flops", "final_val_loss"
_OPS = {"<=": operator.le, ">=": operator.ge, "!=": operator.ne, "=": operator.eq, "<": operator.lt, ">": operator.gt}


def register(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "fit", help="fit a scaling law to a ladder or a CSV, with calibrated prediction intervals",
        description="Fit L(C) = a*C^(-b) + c (or, with --n/--d, L(N, D) = E + A/N^alpha + B/D^beta) in log space "
                    "with a Huber loss from many starting points (L-BFGS-B, analytic gradients). Intervals come "
                    "from back-testing the ladder on itself (fit the smaller runs, predict the larger) scaled to "
                    "the extrapolation distance; see foresight/scaling/fit.py.")
    _add_fit_arguments(f)
    f.set_defaults(func=_fit)

    p = sub.add_parser(
        "predict", help="fit, predict, and (with --register) append the prediction to the ledger",
        description="Like `foresight fit`, then with --register append the prediction to an append-only, "
                    "hash-chained ledger (refused once the target run has written metrics).")
    _add_fit_arguments(p)
    p.add_argument("--register", action="store_true", help="append the prediction(s) to the ledger")
    p.add_argument("--ledger", type=Path, default=Path("ledger.jsonl"), help="ledger file (default ledger.jsonl)")
    p.add_argument("--target", type=Path, help="the target run's config (its sha256 goes in the entry)")
    p.add_argument("--target-run", type=Path, help="the target's run directory: registration is refused once "
                                                    "it holds metrics")
    p.add_argument("--sign-key", type=Path, metavar="KEY", help="sign the entry with this ed25519 private key "
                                                                "(from `foresight ledger keygen`)")
    p.set_defaults(func=_predict)

    led = sub.add_parser("ledger", help="check or show a prediction ledger")
    lsub = led.add_subparsers(dest="ledger_command", metavar="SUBCOMMAND")
    v = lsub.add_parser(
        "verify", help="check every entry's hash and the chain; name the first bad entry",
        description="Check every entry's hash, the chain and every signature. On its own this shows only that the "
                    "file is self-consistent: entries cut from the end, or a whole chain rewritten with "
                    "recomputed hashes, still pass. To catch those, check against an anchor kept outside the "
                    "file: --expect (the head you kept), --public-key (every entry signed by your key; does not "
                    "catch a cut end) or --git (the heads committed by `foresight ledger anchor`). A ledger with "
                    "no entries is refused.")
    v.add_argument("ledger", type=Path)
    v.add_argument("--expect", metavar="SHA256", help="require an entry with this sha256, all 64 hex characters "
                                                       "(a prefix is refused): catches entries cut from the end "
                                                       "and a rewritten chain")
    v.add_argument("--public-key", metavar="PUB", help="require every entry to be signed by this ed25519 key (64 "
                                                        "hex characters, or the KEY.pub file from keygen)")
    v.add_argument("--git", action="store_true", help="require every head committed to LEDGER.head by "
                                                      "`foresight ledger anchor` to be in the ledger")
    v.set_defaults(func=_ledger_verify)
    s = lsub.add_parser("show", help="print the entries, one line each, and the head")
    s.add_argument("ledger", type=Path)
    s.set_defaults(func=_ledger_show)
    k = lsub.add_parser("keygen", help="write an ed25519 signing key (mode 0600) and print its public key",
                        description="Write a new ed25519 private key to KEY (PEM, readable only by you) and its "
                                    "public key to KEY.pub. Sign entries with `--sign-key KEY` (predict "
                                    "--register, forecast); check them with `ledger verify --public-key KEY.pub`.")
    k.add_argument("--out", required=True, type=Path, metavar="KEY")
    k.set_defaults(func=_ledger_keygen)
    a = lsub.add_parser("anchor", help="commit the ledger's head to git (LEDGER.head), for `verify --git`",
                        description="Verify the ledger, write its head hash to LEDGER.head next to it and commit "
                                    "that one file in the git repository holding the ledger (nothing else you "
                                    "have staged is committed). Push it somewhere you do not control alone: a "
                                    "forger who can rewrite this repository's history can rewrite the anchor.")
    a.add_argument("ledger", type=Path)
    a.set_defaults(func=_ledger_anchor)
    led.set_defaults(func=lambda args: led.print_help())


def _add_fit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="a ladder/forecast directory, or a CSV file with named columns")
    p.add_argument("--x", help=f"compute column (default for a ladder: {LADDER_X})")
    p.add_argument("--y", help=f"loss column (default for a ladder: {LADDER_Y})")
    p.add_argument("--n", help="parameter-count column: fit the two-variable law L(N, D) (needs --d)")
    p.add_argument("--d", help="token-count column for L(N, D)")
    p.add_argument("--law", choices=ONE_VARIABLE_LAWS, default="power",
                   help="the one-variable law: power (a*C^-b + c, the default), power_no_offset (a*C^-b) or "
                        "log_linear (alpha - beta*ln C, a local law; see docs/fitting.md)")
    p.add_argument("--top-runs", type=int, default=0, metavar="K",
                   help="fit only the K points of largest x, with the scatter of all of them as the interval's "
                        "floor (as `foresight forecast` does with [fit] top_runs; one-variable laws)")
    p.add_argument("--where", action="append", default=[], metavar="COL<OP>VALUE",
                   help="keep only rows matching, e.g. dataset=rpj or C_6ND<=2.1e19 (ops = != < <= > >=); "
                        "repeatable")
    p.add_argument("--predict", action="append", default=[], metavar="X",
                   help="predict at X (or N,D for the two-variable law); repeatable")
    p.add_argument("--level", type=float_in(0, 1, open_lo=True, open_hi=True), default=0.9,
                   help="interval level, between 0 and 1 (default 0.9)")
    p.add_argument("--bootstrap", type=int_in(0, 10**6), default=200, help="bootstrap resamples (default 200)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--plot", type=Path, metavar="PNG", help="write the data, the fitted curve and the predictions")


# ----- reading the points -------------------------------------------------------------------------------------------


def _ladder_rows(folder: Path) -> tuple[list[dict], str]:
    summaries = sorted((folder / "runs").glob("*/summary.json")) or sorted(folder.glob("*/summary.json"))
    if not summaries:
        raise ForesightError(f"{folder} holds no finished runs (no runs/*/summary.json); train the ladder with "
                             f"`foresight ladder run {folder}`")
    rows = []
    for path in summaries:
        try:
            row = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ForesightError(f"{path} is not valid JSON ({e})") from None
        row["name"] = path.parent.name
        row["_sha256"] = sha256_file(path)
        rows.append(row)
    return rows, "name"


def _csv_rows(path: Path) -> tuple[list[dict], str | None]:
    try:
        with open(path, newline="") as f:
            text = f.read()
        if "\0" in text:  # valid UTF-8 can still be binary; the csv module reads NUL as data
            raise ValueError("it holds NUL bytes")
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise ForesightError(f"{path} is empty or has no header row")
        rows = list(reader)
    except (UnicodeDecodeError, ValueError, csv.Error) as e:
        raise ForesightError(f"{path} is not a text CSV file ({e})") from None
    label = next((c for c in ("name", "run", "model") if c in reader.fieldnames), None)
    return rows, label


def _parse_where(spec: str):
    m = re.fullmatch(r"\s*([^<>=!]+?)\s*(<=|>=|!=|=|<|>)\s*(.+?)\s*", spec)
    if not m:
        raise ForesightError(f"--where {spec!r}: expected COLUMN<OP>VALUE, e.g. dataset=rpj or C_6ND<=2e19")
    col, op, value = m.groups()
    return col, op, value


def _matches(row: dict, col: str, op: str, value: str, source: Path) -> bool:
    if col not in row:
        raise ForesightError(f"{source}: --where names column {col!r}, which is not there; columns: "
                             f"{', '.join(k for k in row if not k.startswith('_'))}")
    cell = row[col]
    try:
        return _OPS[op](float(cell), float(value))
    except (TypeError, ValueError):
        if op not in ("=", "!="):
            raise ForesightError(f"{source}: --where {col}{op}{value}: {cell!r} is not a number") from None
        return _OPS[op](str(cell), value)


def _number(row: dict, col: str, source: Path, label: str) -> float:
    if col not in row:
        raise ForesightError(f"{source} has no column {col!r}; columns: "
                             f"{', '.join(k for k in row if not k.startswith('_'))}")
    try:
        value = float(row[col])
    except (TypeError, ValueError):
        raise ForesightError(f"{source}: {label} has {col} = {row[col]!r}, which is not a number") from None
    return value


def load_points(args) -> dict:
    """The rows of INPUT that pass --where, as arrays for the chosen law, plus labels and a hash of each row."""
    src: Path = args.input
    if src.is_dir():
        rows, label_col = _ladder_rows(src)
        x_col, y_col = args.x or LADDER_X, args.y or LADDER_Y
    elif src.is_file():
        rows, label_col = _csv_rows(src)
        x_col, y_col = args.x, args.y
        if y_col is None or (x_col is None and not (args.n and args.d)):
            raise ForesightError(f"{src} is a CSV: name its columns with --x COL --y COL (or --n COL --d COL "
                                 "--y COL for L(N, D))")
    else:
        raise ForesightError(f"{src} does not exist (expected a ladder directory or a CSV file)")
    if args.n and args.law != "power":
        raise ForesightError(f"--law {args.law} is a one-variable law: leave out --n/--d, or --law")
    if bool(args.n) != bool(args.d):
        raise ForesightError("--n and --d go together (the two-variable law L(N, D) needs both)")
    for spec in args.where:
        col, op, value = _parse_where(spec)
        rows = [r for r in rows if _matches(r, col, op, value, src)]
    if not rows:
        raise ForesightError(f"{src}: no rows left to fit" + (f" after --where {' '.join(args.where)}"
                                                              if args.where else ""))
    labels = [str(r.get(label_col, i + 1)) if label_col else f"row {i + 2}" for i, r in enumerate(rows)]
    y = [_number(r, y_col, src, lab) for r, lab in zip(rows, labels)]
    if args.n:
        inputs = [[_number(r, args.n, src, lab), _number(r, args.d, src, lab)] for r, lab in zip(rows, labels)]
        law, names = "chinchilla", (args.n, args.d)
    else:
        inputs = [_number(r, x_col, src, lab) for r, lab in zip(rows, labels)]
        law, names = args.law, (x_col,)
    hashes = {lab: r.get("_sha256") or hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()
              for lab, r in zip(labels, rows)}
    return {"law": law, "inputs": inputs, "y": y, "labels": labels, "names": names, "y_name": y_col,
            "hashes": hashes}


def _parse_predictions(specs: list[str], law: str) -> list:
    out = []
    for spec in specs:
        try:
            parts = [float(v) for v in spec.split(",")]
        except ValueError:
            raise ForesightError(f"--predict {spec!r} is not a number (or N,D pair)") from None
        want = 2 if law == "chinchilla" else 1
        if len(parts) != want:
            raise ForesightError(f"--predict {spec!r}: the {law} law takes {'N,D' if want == 2 else 'one value'}")
        if not all(math.isfinite(v) and v > 0 for v in parts):
            raise ForesightError(f"--predict {spec!r}: values must be positive and finite")
        out.append(parts if want == 2 else parts[0])
    return out


# ----- commands -----------------------------------------------------------------------------------------------------


def _do_fit(args):
    from foresight.scaling.fit import fit_law, fit_top_runs

    _check_plot(args.plot)
    pts = load_points(args)
    xs = _parse_predictions(args.predict, pts["law"])
    common = dict(labels=pts["labels"], input_names=pts["names"], y_name=pts["y_name"], n_bootstrap=args.bootstrap)
    if args.top_runs:
        if pts["law"] == "chinchilla":
            raise ForesightError("--top-runs is for one-variable laws: leave out --n/--d, or --top-runs")
        result = fit_top_runs(pts["law"], pts["inputs"], pts["y"], args.top_runs, **common)
    else:
        result = fit_law(pts["law"], pts["inputs"], pts["y"], **common)
    summary = result.to_dict(xs, level=args.level)
    if args.plot:
        from foresight.scaling.report import plot_fit

        plot_fit(args.plot, result, summary, title=str(args.input.name))
    return pts, result, summary


def _check_plot(plot: Path | None) -> None:
    """--plot names an image file to write: refuse a directory or a path under a file before fitting."""
    if plot is None:
        return
    if not str(plot).strip() or plot.is_dir():
        raise ForesightError(f"--plot {plot} is a directory; name the image file to write, e.g. {plot}/fit.png")
    parent = plot.parent
    if parent.exists() and not parent.is_dir():
        raise ForesightError(f"--plot {plot}: {parent} is not a directory")


def _print_summary(summary: dict, args) -> None:
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    params = ", ".join(f"{k} = {v:.5g}" for k, v in summary["params"].items())
    print(f"{summary['formula']} fitted to {summary['n_points']} points: {params}")
    cal = summary["calibration"]
    if cal["noise"] is not None:
        print(f"back-test: {cal['backtest_predictions']} held-out predictions from {cal['backtest_cuts']} cuts; "
              f"noise scale {cal['noise']:.4f} (log loss) before leverage")
    if cal["noise_floor"]:
        print(f"noise floor from every point (--top-runs): {cal['noise_floor']:.4f} (log loss) before leverage")
    pct = round(100 * summary["level"])
    for row in summary["predictions"]:
        x = row["x"] if not isinstance(row["x"], list) else "N=%.4g, D=%.4g" % tuple(row["x"])
        x = f"{x:.4g}" if isinstance(x, float) else x
        print(f"at {x}: {row['y']:.4f}  ({pct}% interval {row['low']:.4f} - {row['high']:.4f}, "
              f"{row['extrapolation']:.0f}x beyond the largest point)")
    if args.plot:
        print(f"wrote {args.plot}")


def _fit(args) -> int:
    _, _, summary = _do_fit(args)
    _print_summary(summary, args)
    return 0


def _predict(args) -> int:
    if not args.predict:
        raise ForesightError("foresight predict needs at least one --predict X")
    pts, result, summary = _do_fit(args)
    _print_summary(summary, args)
    if not args.register:
        return 0
    from foresight.scaling.ledger import load_signing_key, make_entry, register as register_entry

    if args.target is not None and not args.target.is_file():
        raise ForesightError(f"--target {args.target} does not exist")
    key = load_signing_key(args.sign_key) if args.sign_key else None
    predictions = [{**row, "level": summary["level"], "params": summary["params"]} for row in summary["predictions"]]
    entry = make_entry("loss", summary["formula"], predictions, ladder_results=pts["hashes"],
                       target_config_sha256=sha256_file(args.target) if args.target else None,
                       source=str(args.input))
    record = register_entry(args.ledger, entry, target_run_dir=args.target_run, signing_key=key)
    print(f"registered entry {record['index']}{' (signed)' if key else ''} in {args.ledger}")
    print(f"keep this head to detect later edits: {record['sha256']}")
    return 0


def _ledger_verify(args) -> int:
    from foresight.scaling import ledger

    # Every check before any output: a ledger that fails one must not first read as "intact".
    expect = ledger.check_sha256(args.expect) if args.expect is not None else None
    public = ledger.parse_public_key(args.public_key) if args.public_key else None
    entries = ledger.verify(args.ledger, public_key=public)
    matched = ledger.expected_entry(entries, expect, args.ledger) if expect else None
    heads = ledger.git_anchored_heads(args.ledger) if args.git else []
    present = {e["sha256"] for e in entries}
    for commit, sha in heads:
        if sha not in present:
            raise ForesightError(f"{args.ledger}: the head {sha} anchored in git commit {commit[:12]} is not in the "
                                 "ledger: entries were cut from the end or the chain was rewritten")

    print(f"{args.ledger}: {len(entries)} entries, chain intact, head {entries[-1]['sha256']}")
    if matched:
        after = len(entries) - 1 - matched["index"]
        print(f"  --expect matches entry {matched['index']} ({matched['time_utc']})"
              + (f", {after} entries after it" if after else ", the last one"))
    signed = {e.get("signer") for e in entries} - {None}
    if public:
        print(f"  every entry is signed by {public}")
    elif signed:
        print(f"  signatures valid; signers {', '.join(sorted(signed))}: pass --public-key to require yours")
    if heads:
        print(f"  all {len(heads)} heads anchored in git are in it (latest: commit {heads[0][0][:12]})")
    if not (expect or public or heads):
        print("  (self-consistent only: without --expect, --public-key or --git, a chain cut at the end or "
              "rewritten with recomputed hashes would also pass)")
    return 0


def _ledger_show(args) -> int:
    from foresight.scaling.ledger import predictions_of, verify

    def fmt(p: dict) -> str:
        name = f"{p['name']}: " if p.get("name") else ""
        try:
            return f"{name}{p['y']:.4f} [{p['low']:.4f}, {p['high']:.4f}]"
        except (KeyError, TypeError, ValueError):  # an old entry of some other shape: show what it holds
            return name + json.dumps({k: p[k] for k in ("y", "low", "high") if k in p})

    entries = verify(args.ledger)
    for e in entries:
        kind = e.get("kind", "loss")
        shown = "; ".join(fmt(p) for p in predictions_of(e)) or "(no prediction)"
        signed = " signed" if "signature" in e else ""
        print(f"{e['index']:3d} {e['time_utc']} {e['sha256'][:12]} {kind}{signed} {e.get('law', '')}: {shown}")
    print(f"head {entries[-1]['sha256']}")
    return 0


def _ledger_keygen(args) -> int:
    from foresight.scaling.ledger import write_keypair

    public = write_keypair(args.out)
    print(f"wrote the private key {args.out} (mode 0600: keep it to yourself) and {args.out}.pub")
    print(f"public key: {public}")
    return 0


def _ledger_anchor(args) -> int:
    from foresight.scaling.ledger import anchor_in_git, anchor_path

    head, commit = anchor_in_git(args.ledger)
    where = anchor_path(args.ledger)
    if commit is None:
        print(f"head {head['sha256']} (entry {head['index']}) is already committed in {where}")
    else:
        print(f"committed head {head['sha256']} (entry {head['index']}) in {where}: commit {commit[:12]}")
    return 0
