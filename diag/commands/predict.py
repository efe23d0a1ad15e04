"""``diag predict RUN PATH...``: score recordings, print a table, write JSON / CSV / plots.

The scoring itself (reading, the run's preprocessing, windows -> probabilities -> verdict, spans,
unknown) is :mod:`diag.serving.scoring`; this module is the command around it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

from diag.errors import DiagError
from diag.serving.predictor import PROGRESS_WINDOWS, Predictor
from diag.serving.verdict import UNUSABLE, VERDICT_RULE, FileResult
from diag.show import console as make_console
from diag.show import esc, tagged
from diag.sources.stream import expand_paths

# ================================================================================================
# Batch scoring of files, outputs


def predict_files(run: str | Path, paths: Sequence[str | Path], fs: float | None = None, hop: int | None = None,
                  channels: Sequence[str] | None = None, device: str = "cpu", quiet: bool = False,
                  console: Any = None, key: str | None = None, variable: str | None = None,
                  ref_hz: float | None = None, rpm: float | None = None, engine: str = "auto",
                  quantize: str = "none") -> tuple[Predictor, list[FileResult]]:
    """Score every file (folders expanded); prints notes and progress on ``console`` unless quiet.

    ``ref_hz`` / ``rpm`` (= 60 x Hz, a shaft speed): the reference rate of every file for a run on order
    images (see :meth:`Predictor.reference`); without them each file's metadata, else the run's."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    check_ref_options(ref_hz, rpm)
    files = expand_paths(paths)
    pred = Predictor(run, device=device, hop=hop, quiet=quiet, engine=engine, quantize=quantize)
    if rpm is not None:
        if "harmonics" in pred.pre.transform.parts:
            raise DiagError(f"--rpm: {pred.run} draws harmonics images, on orders of the electrical fundamental, "
                            "not of the shaft speed; pass the fundamental as --ref-hz HZ")
        ref_hz = rpm / 60.0
    check_ignored_options(pred, files, ref_hz, rpm, key, variable)
    results = []
    show = console is not None and not quiet
    for note in pred.notes:
        if show:
            console.print(tagged("[yellow]note:[/]", note))
    for f in files:
        sig = pred.open(f, fs, key, variable)
        n_win = max(0, (sig.n_samples - pred.length) // pred.hop + 1)
        if show and n_win > PROGRESS_WINDOWS:
            with Progress(TextColumn(f"[bold]predict[/] {esc(Path(sig.path).name)}"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), console=console, transient=True) as bar:
                task = bar.add_task("windows", total=n_win)
                res = pred.predict_signal(sig, channels, lambda i, n: bar.update(task, completed=i, total=n),
                                          ref_hz=ref_hz)
        else:
            res = pred.predict_signal(sig, channels, ref_hz=ref_hz)
        if show:
            for note in res.notes:
                console.print(tagged("[yellow]note:[/]", f"{res.path}: {note}"))
        results.append(res)
    return pred, results


def check_ignored_options(pred: Predictor, files: Sequence[Path], ref_hz: float | None, rpm: float | None,
                          key: str | None, variable: str | None) -> None:
    """Refuse an option that would be silently ignored: ``--ref-hz`` / ``--rpm`` for a run whose images use no
    reference rate (CWT, STFT), ``--key`` with no ``.npz`` file, ``--variable`` with no ``.mat`` file."""
    if (ref_hz is not None or rpm is not None) and not pred.pre.needs_ref and \
            (ref_hz is None or (math.isfinite(ref_hz) and ref_hz > 0)):
        opt = "--rpm" if rpm is not None else "--ref-hz"
        raise DiagError(f"{opt}: {pred.run} draws {pred.pre.transform.kind} images, which use no reference rate "
                        f"(only envorder / harmonics runs do); leave {opt} out")
    for opt, value, ext in (("--key", key, ".npz"), ("--variable", variable, ".mat")):
        if value is not None and not any(Path(f).suffix.lower() == ext for f in files):
            raise DiagError(f"{opt} {value}: names an array inside {ext} files, but no {ext} file is given; "
                            f"leave {opt} out")


def check_ref_options(ref_hz: float | None, rpm: float | None) -> None:
    """``--ref-hz`` and ``--rpm`` exclude each other; ``--rpm`` is a positive number (``--ref-hz``: per file)."""
    if ref_hz is not None and rpm is not None:
        raise DiagError("--ref-hz and --rpm both given; pass one of them (--rpm RPM is --ref-hz RPM/60)")
    if rpm is not None and not (isinstance(rpm, (int, float)) and math.isfinite(rpm) and rpm > 0):
        raise DiagError(f"--rpm: must be a positive shaft speed in revolutions per minute, got {rpm!r}")


def results_json(pred: Predictor, results: Sequence[FileResult], windows: bool = False) -> dict[str, Any]:
    return {"model": pred.describe(), "files": [r.to_dict(windows, pred.length) for r in results]}


def results_csv(pred: Predictor, results: Sequence[FileResult], windows: bool = False) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if windows:
        w.writerow(["path", "window", "start_s", "end_s", "label", "unknown", "score"] + [f"p_{c}" for c in pred.classes])
        for r in results:
            for i, (s, lab, u, sc, p) in enumerate(zip(r.windows.start, r.labels, r.windows.unknown, r.windows.score,
                                                       r.windows.probs)):
                w.writerow([r.path, i, f"{s / r.fs:.6f}", f"{(s + pred.length) / r.fs:.6f}", lab, int(u),
                            f"{sc:.5f}"] + [f"{v:.5f}" for v in p])
    else:
        w.writerow(["path", "verdict", "confidence", "unknown", "unknown_share", "top1", "p1", "top2", "p2", "top3",
                    "p3", "verdict_start_s", "verdict_end_s", "n_windows", "spans", "ref_hz_start", "ref_hz_end",
                    "unusable", "engine"])  # engine: torch | onnx, which scored it (the JSON's model.engine)
        for r in results:
            top = [x for t in r.top for x in (t["class"], f"{t['p']:.4f}")] + [""] * (6 - 2 * len(r.top))
            vs = r.verdict_span or ["", ""]
            spans = "; ".join(f"{s['label']} {s['start_s']:g}-{s['end_s']:g}s" for s in r.spans)
            w.writerow([r.path, r.verdict, f"{r.confidence:.4f}", int(r.is_unknown), f"{r.unknown_share:.4f}", *top,
                        vs[0], vs[1], len(r.windows.start), spans, *([f"{v:g}" for v in r.ref_hz] if r.ref_hz else ["", ""]),
                        r.unusable, pred.engine_name])
    return buf.getvalue()


def check_outputs(run: str | Path, paths: Sequence[str | Path], json_path: Path | None, csv_path: Path | None,
                  plot_dir: Path | None = None, calibrate: str | Path | None = None, force: bool = False) -> None:
    """Refuse, before any scoring starts, an output file that is an input, lies in the run / an input folder /
    a dataset, shares a path with another output, or exists and was not written by diag (``--force`` replaces
    only diag's own; :func:`diag.storage.claim_output_files`)."""
    from diag.storage import claim_output_files

    for opt, p in (("--json", json_path), ("--csv", csv_path)):
        if p is not None and plot_dir is not None and Path(p).resolve() == Path(plot_dir).resolve():
            raise DiagError(f"{opt} {p} and --plot {plot_dir} name the same path; give each output its own name")
    folders = [run, calibrate, *(p for p in paths if Path(p).is_dir())]
    if plot_dir is not None:
        from diag.storage import sealed_folder

        sealed = sealed_folder(plot_dir, folders)
        if sealed is not None:
            raise DiagError(f"--plot {plot_dir}: lies inside {sealed}, a folder diag keeps for its own records (a run, "
                            "a prepared dataset or an input); choose a --plot folder outside it")
    claim_output_files([("--json", json_path), ("--csv", csv_path)], force=force, inputs=[run, *paths],
                       protected_dirs=folders)


def write_outputs(pred: Predictor, results: Sequence[FileResult], json_path: Path | None, csv_path: Path | None,
                  windows: bool, plot_dir: Path | None) -> list[Path]:
    """Write the requested outputs atomically (each file appears whole or not at all)."""
    from diag.storage import clean_stale_temporaries, json_default, write_output_file

    for p in (json_path, csv_path):  # what a write killed midway left (.NAME.tmp-PID-*)
        if p is not None:
            clean_stale_temporaries(p)

    written = []
    if plot_dir is not None:
        from diag.serving.plots import plot_result
        from diag.storage import write_marker

        plot_dir.mkdir(parents=True, exist_ok=True)
        write_marker(plot_dir, "predict")
        for k, r in enumerate(results):
            out = plot_dir / f"{k:03d}_{Path(r.path).stem}.png"
            plot_result(pred, r, out)
            written.append(out)
    if json_path is not None:
        write_output_file(json_path, json.dumps(results_json(pred, results, windows), indent=2, default=json_default) + "\n")
        written.append(json_path)
    if csv_path is not None:
        write_output_file(csv_path, results_csv(pred, results, windows))
        written.append(csv_path)
    return written


def print_table(pred: Predictor, results: Sequence[FileResult], console: Any) -> None:
    from rich.table import Table

    t = Table(title=esc(f"{pred.run} ({pred.meta.get('model')}, {len(pred.classes)} classes, "
                        f"unknown: {pred.unknown.describe()['method'] if pred.unknown else 'off'})"))
    for col, just in (("file", "left"), ("verdict", "left"), ("conf.", "right"), ("top 3", "left"),
                      ("unknown", "right"), ("windows", "right"), ("where (s)", "left")):
        t.add_column(col, justify=just)
    for r in results:
        style = "bold red" if r.verdict == UNUSABLE else "bold yellow" if r.is_unknown else "bold"
        where = esc(", ".join(f"{s['label']} {s['start_s']:.1f}-{s['end_s']:.1f}" for s in r.spans[:3]))
        if len(r.spans) > 3:
            where += f", +{len(r.spans) - 3} more"
        if r.unusable:
            where = esc(r.unusable)
        t.add_row(esc(Path(r.path).name), f"[{style}]{esc(r.verdict)}[/]", f"{r.confidence:.2f}",
                  esc(" ".join(f"{x['class']} {x['p']:.2f}" for x in r.top)), f"{100 * r.unknown_share:.0f} %",
                  str(len(r.windows.start)), where)
    console.print(t)


def run_predict(run: str | Path, paths: Sequence[str | Path], fs: float | None = None, hop: int | None = None,
                channels: Sequence[str] | None = None, json_path: Path | None = None, csv_path: Path | None = None,
                windows: bool = False, plot_dir: Path | None = None, device: str = "cpu", force: bool = False,
                quiet: bool = False, key: str | None = None, variable: str | None = None,
                calibrate: str | Path | None = None, ref_hz: float | None = None,
                rpm: float | None = None, engine: str = "auto", quantize: str = "none") -> list[FileResult]:
    """What ``diag predict`` does: check outputs, (re)calibrate unknown if asked, score, print, write outputs."""
    from diag.serving.engine import check_engine

    check_engine(engine, quantize, device)
    check_outputs(run, paths, json_path, csv_path, plot_dir, calibrate, force)
    check_ref_options(ref_hz, rpm)
    if plot_dir is not None:
        from diag.storage import claim_output

        if claim_output(plot_dir, "predict", force=force, inputs=[run, *paths], option="--plot") and not force:
            raise DiagError(f"--plot {plot_dir}: already holds plots of diag predict; choose another folder or "
                            "pass --force to replace them")
    if calibrate is not None:
        from diag.learning.unknown import calibrate_run

        info = calibrate_run(run, calibrate)
        th = info["thresholds"][f"{info['far']:g}"]
        if not quiet:
            make_console(stderr=True).print(esc(f"unknown: {info['method']} threshold {th:.4g} "
                                                f"for {100 * info['far']:g} % false alarms on {info['calibrated_on']['n']} "
                                                f"validation windows of {calibrate} -> {Path(run) / 'unknown.json'}"))
    if plot_dir is not None and plot_dir.exists() and not plot_dir.is_dir():
        raise DiagError(f"--plot {plot_dir}: exists and is not a folder")
    err = make_console(stderr=True)
    t0 = time.perf_counter()
    pred, results = predict_files(run, paths, fs, hop, channels, device, quiet, err, key, variable, ref_hz, rpm,
                                  engine, quantize)
    if not quiet:
        print_table(pred, results, make_console())
        n = sum(len(r.windows.start) for r in results)
        err.print(esc(f"{len(results)} file(s), {n} windows in {time.perf_counter() - t0:.1f} s; verdict rule: {VERDICT_RULE}"))
    write_outputs(pred, results, json_path, csv_path, windows, plot_dir)
    return results
