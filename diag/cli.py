"""The ``diag`` command line. Thin: parse, call one function, print.

Every command turns a :class:`~diag.errors.DiagError` into one line on stderr and exit status 2;
no traceback reaches the user for a problem with their input.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer

from diag.errors import DiagError
from diag.show import console as make_console
from diag.show import esc

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Diagnose faults in machines and power converters from raw waveforms.",
    pretty_exceptions_enable=False,
)
console = make_console(stderr=True)


@app.callback()
def _root() -> None:
    """Diagnose faults in machines and power converters from raw waveforms.

    Pipeline: simulate or fetch recordings -> prepare (windows, leakage-free split, CWT/STFT images)
    -> pretrain (self-supervised, optional) -> train --init imagenet|ssl|scratch
    -> predict (new recordings) | evaluate (another prepared set) | export (ONNX).
    """


def friendly(fn: Callable) -> Callable:
    """Run a command, printing a DiagError or an OSError as one line and exiting 2 (130 on Ctrl-C)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DiagError as exc:
            console.print(f"[bold red]error:[/] {esc(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # the machine's, not diag's: a read-only folder, a full disk, a vanished file
            where = f"{exc.filename}: " if exc.filename else ""
            console.print(f"[bold red]error:[/] {esc(where)}{esc(exc.strerror or exc)}; check the path, its permissions "
                          "and the free disk space, then run the command again", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]; outputs written so far are intact (writes are atomic)")
            raise typer.Exit(130) from None

    return wrapper


# ------------------------------------------------------------------------------------------------
# diag prepare


@app.command()
@friendly
def prepare(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML config (see configs/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory of the prepared dataset."),
    data: Optional[str] = typer.Option(None, "--data", help="Override source.path (file or folder)."),
    source: Optional[str] = typer.Option(None, "--source", help="Override source.kind."),
    split: Optional[str] = typer.Option(None, "--split", help="Split method: time|recording|group|condition|fault-size|random."),
    transform: Optional[str] = typer.Option(None, "--transform", help="Image kinds joined by +: cwt, stft, envorder (envelope spectrum on a shaft-order axis), harmonics (multiples of the fundamental), e.g. cwt+envorder; or auto: pick by a probe on the validation split."),
    allow_leaky: bool = typer.Option(False, "--allow-leaky", help="Permit the leaky 'random' split (prints a warning)."),
    force: bool = typer.Option(False, "--force", help="Replace a prepared dataset at --out made with a different config (never other files)."),
    set_: List[str] = typer.Option([], "--set", "-s", help="Override any setting: section.key=value (repeatable)."),
    device: str = typer.Option("cpu", "--device", help="Where the CWT/STFT runs: cpu (bit-reproducible) | cuda[:N] | auto."),
    strict: bool = typer.Option(False, "--strict", help="Make every data-audit finding an error (exit 2, nothing written)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output or summary table."),
) -> None:
    """Read recordings, resample, window, split without leakage, and write time-frequency images."""
    from diag.commands.prepare import prepare as run_prepare

    overrides = list(set_)
    if data is not None:
        overrides.append(f"source.path={_toml_str(data)}")
    if source is not None:
        overrides.append(f"source.kind={_toml_str(source)}")
    if split is not None:
        overrides.append(f"split.method={_toml_str(split)}")
    if transform is not None:
        overrides.append(f"transform.kind={_toml_str(transform)}")
    if allow_leaky:
        overrides.append("split.allow_leaky=true")
    run_prepare(config, out, overrides=overrides, force=force, device=device, quiet=quiet, strict=strict)


@app.command()
@friendly
def audit(
    prepared: Path = typer.Argument(..., help="A prepared dataset folder (diag prepare)."),
    strict: bool = typer.Option(False, "--strict", help="Exit 2 when there is any finding."),
) -> None:
    """Re-run the data audit on a prepared dataset: classes on one recording / group / condition, trivial
    separators (one image row, per-recording RMS / DC offset), resampling for some classes only, one-sided splits."""
    from diag.signal.audit import audit_prepared

    audit_prepared(prepared, console, strict=strict)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------------------------------------------
# diag fetch


@app.command()
@friendly
def fetch(
    dataset: str = typer.Argument(..., help="cwru | paderborn | ottawa"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Target folder (default data_raw/DATASET)."),
    records: Optional[str] = typer.Option(None, "--records", help="CWRU record numbers (e.g. 97,105,130) or Paderborn bearing codes (e.g. K001,KA01); default: all."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for the server."),
) -> None:
    """Download a public dataset from its official site into data_raw/ (needs internet)."""
    from diag.sources.fetch import DATASETS
    from diag.sources.fetch import fetch as run_fetch

    if dataset not in DATASETS:
        raise DiagError(f"unknown dataset '{dataset}'; choose one of {', '.join(DATASETS)}")
    target = out or Path("data_raw") / dataset
    recs = [r.strip() for r in records.split(",") if r.strip()] if records else None
    files = run_fetch(dataset, target, records=recs, timeout=timeout)
    console.print(f"{len(files)} files in {esc(target)}")


# ------------------------------------------------------------------------------------------------
# diag simulate


@app.command()
@friendly
def simulate(
    kind: str = typer.Argument(..., help="bearing | inverter"),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write: one file per recording + labels.csv."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 0)."),
    set_: List[str] = typer.Option([], "--set", "-s", help="Simulator option key=value, e.g. recordings_per_class=4 (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an --out folder that diag simulate wrote (never other files)."),
) -> None:
    """Simulate labelled recordings (bearing vibration or inverter currents) in the format `diag prepare` reads."""
    from diag.simulate import simulate_to_folder

    typer.echo(simulate_to_folder(kind, str(out), seed=seed, options=set_, overwrite=overwrite))


# ------------------------------------------------------------------------------------------------
# diag train / diag pretrain


@app.command()
@friendly
def train(
    data: Optional[Path] = typer.Option(None, "--data", help="Prepared dataset folder (diag prepare); optional with --resume."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write."),
    init: Optional[str] = typer.Option(None, "--init", help="imagenet | ssl | scratch (default scratch)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Checkpoint: ImageNet .pth/.safetensors, or a diag pretrain folder."),
    model: Optional[str] = typer.Option(None, "--model", help="timm model name (default convnext_atto)."),
    freeze: Optional[str] = typer.Option(None, "--freeze", help="none | stem | stages:K | backbone (linear probe)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs (default 30)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Global batch size (default 64)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default 1e-3)."),
    warmup: Optional[float] = typer.Option(None, "--warmup", help="Warmup: fraction of steps (<1) or steps (>=1)."),
    labels_per_class: Optional[str] = typer.Option(None, "--labels-per-class", help="Use only N (>= 1) labelled windows per class, or all (default)."),
    label_fraction: Optional[float] = typer.Option(None, "--label-fraction", help="Use only this stratified fraction of labels."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 0)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda[:N] | mps."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML config file; diag train reads its train table."),
    set_: List[str] = typer.Option([], "--set", "-s", help="Override a setting: train.key=value (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    force: bool = typer.Option(False, "--force", help="Replace a diag training run in --out and start over (never other files)."),
    track: Optional[str] = typer.Option(None, "--track", help="Log to tensorboard and/or mlflow, comma-separated (pip install 'diag[track]'); also the config's [track] table."),
    refit_from: Optional[Path] = typer.Option(None, "--refit-from", help="A finished run: train its settings for the epochs it selected on --data prepared with split.val_fraction=0 (every training unit, same test side)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Fine-tune a classifier (ConvNeXt by default) from ImageNet, SSL or scratch; select on val, score test once."""
    from diag.commands.train import run

    if label_fraction is not None and not 0 < label_fraction <= 1:
        raise DiagError(f"--label-fraction {label_fraction:g}: must be a fraction in (0, 1]; every label is the "
                        "default (leave the option out)")
    budget = None if labels_per_class is None else _ints(labels_per_class, "--labels-per-class", budget=True)
    if budget is not None and len(budget) != 1:
        raise DiagError(f"--labels-per-class: one number (or all) for diag train, got '{labels_per_class}'")
    flags = {"init": init, "weights": weights, "model": model, "freeze": freeze, "epochs": epochs,
             "batch_size": batch_size, "lr": lr, "warmup": warmup,
             "labels_per_class": budget[0] if budget else None,
             "label_fraction": label_fraction, "seed": seed, "device": device}
    overrides = list(set_) + [f"train.{k}={_toml_value(v)}" for k, v in flags.items() if v is not None]
    run(data, out, config, overrides, resume=resume, force=force, quiet=quiet, refit_from=refit_from,
        track=_track(track, config))


@app.command()
@friendly
def pretrain(
    data: Optional[Path] = typer.Option(None, "--data", help="Prepared dataset folder; its train split is pretrained on, its val split probes."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (backbone.safetensors + pretrain.json)."),
    extra: List[Path] = typer.Option([], "--extra", help="More prepared datasets whose train split is used, unlabelled (repeatable)."),
    unlabelled: Optional[Path] = typer.Option(None, "--unlabelled", help="Folder of unlabelled recordings (any format prepare reads), imaged with --data's preprocessing; test recordings are refused."),
    fs: Optional[float] = typer.Option(None, "--fs", help="Sampling rate in Hz of --unlabelled files whose format carries none (CSV, NPY, NPZ, MAT)."),
    method: Optional[str] = typer.Option(None, "--method", help="auto (default: SimCLR and VICReg, the one whose probe rose most kept) | simclr | moco | vicreg | byol | msm."),
    init: Optional[str] = typer.Option(None, "--init", help="scratch (default) | imagenet (then SSL on your signals: the fourth start)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Local ImageNet checkpoint for --init imagenet."),
    model: Optional[str] = typer.Option(None, "--model", help="timm model name (default convnext_atto)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs (default 50)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size (default 64)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default 1e-3)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 0)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda[:N] | mps."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML config file; diag pretrain reads its pretrain table."),
    set_: List[str] = typer.Option([], "--set", "-s", help="Override a setting: pretrain.key=value (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out with its saved settings."),
    force: bool = typer.Option(False, "--force", help="Replace a diag pretraining in --out and start over (never other files)."),
    track: Optional[str] = typer.Option(None, "--track", help="Log to tensorboard and/or mlflow, comma-separated (pip install 'diag[track]'); also the config's [track] table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Self-supervised pretraining on unlabelled windows; a probe on val keeps the best epoch and says whether it learned."""
    from diag.commands.pretrain import run

    flags = {"model": model, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "device": device,
             "method": method, "init": init, "weights": weights}
    overrides = list(set_) + [f"pretrain.{k}={_toml_value(v)}" for k, v in flags.items() if v is not None]
    run(data, out, config, overrides, extra=extra, unlabelled=unlabelled, fs=fs, resume=resume, force=force,
        quiet=quiet, track=_track(track, config))


def _toml_value(v: object) -> str:
    return _toml_str(v) if isinstance(v, str) else str(v)


def _track(flag: Optional[str], config: Optional[Path]):
    """The config's [track] table with ``--track`` trackers turned on; their packages checked at once."""
    from diag.config import TrackConfig, load_section
    from diag.learning.tracking import check_available

    cfg = TrackConfig.from_flag(flag, load_section(TrackConfig, "track", config))
    check_available(cfg)
    return cfg


# ------------------------------------------------------------------------------------------------
# diag compare / diag report


def _ints(text: str, what: str, budget: bool = False) -> list[int]:
    """Comma-separated whole numbers; for a label budget, ``all`` (every label) or N >= 1 labels per class."""
    try:
        values = [0 if budget and v.strip() == "all" else int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DiagError(f"{what}: expected comma-separated whole numbers{' (or all)' if budget else ''}, "
                        f"got '{text}'") from None
    if not values:
        raise DiagError(f"{what}: empty; give at least one value")
    if budget and any(v < 1 for v, t in zip(values, [t for t in text.split(",") if t.strip()]) if t.strip() != "all"):
        raise DiagError(f"{what} {text}: labels per class must be >= 1; every label is spelled 'all'")
    return values


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DiagError(f"{what}: expected comma-separated numbers, got '{text}'") from None


@app.command()
@friendly
def compare(
    data: Path = typer.Option(..., "--data", help="Prepared dataset folder (diag prepare)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the runs and the report."),
    inits: str = typer.Option("scratch,ssl,imagenet", "--inits", help="Starts to compare, comma-separated: imagenet, "
                              "imagenet+ssl, ssl, scratch."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Seeds, comma-separated."),
    labels_per_class: str = typer.Option("all", "--labels-per-class", help="Label budgets, e.g. 5,20,all."),
    freeze: Optional[str] = typer.Option(None, "--freeze", help="Freeze modes, e.g. none,stages:1,backbone (default: the config's)."),
    warmup: Optional[str] = typer.Option(None, "--warmup", help="Warmup settings, e.g. 0.1,0 (default: the config's)."),
    ssl_weights: Optional[str] = typer.Option(None, "--ssl-weights", help="diag pretrain output folder (for --inits ssl)."),
    imagenet_weights: Optional[str] = typer.Option(None, "--imagenet-weights", help="Local ImageNet checkpoint (else $DIAG_IMAGENET_WEIGHTS, packaged weights, or timm's hub)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML config file; diag train reads its train table."),
    set_: List[str] = typer.Option([], "--set", "-s", help="Override a setting: train.key=value (or compare.key, track.key)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Runs side by side in as many worker processes, each taking runs one after another (default: one per GPU, else the cores / compare.threads; compare.threads threads per run, default 1, whatever --jobs is: the thread count changes a CPU run's numbers, docs/cluster.md)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Dask scheduler address (tcp://HOST:8786): every run a task there (pip install 'diag[cluster]'; docs/cluster.md)."),
    track: Optional[str] = typer.Option(None, "--track", help="Log every run and the report to tensorboard and/or mlflow, comma-separated (pip install 'diag[track]')."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    imagenet_ssl_weights: Optional[str] = typer.Option(None, "--imagenet-ssl-weights", help="diag pretrain output "
                                                       "folder pretrained from ImageNet (for --inits imagenet+ssl)."),
) -> None:
    """Train each start (imagenet | imagenet+ssl | ssl | scratch) over seeds, label budgets, freeze modes and warmup;
    then report."""
    import shlex

    from diag.study.compare import compare as run_compare
    from diag.study.report import write_report

    seed_list = _ints(seeds, "--seeds")
    if len(set(seed_list)) != len(seed_list):
        raise DiagError(f"--seeds {seeds}: a seed is listed twice; its runs would be the same run; list each seed once")
    freezes = [f.strip() for f in freeze.split(",") if f.strip()] if freeze else None
    run_compare(data, out, inits=[i.strip() for i in inits.split(",") if i.strip()], seeds=seed_list,
                budgets=_ints(labels_per_class, "--labels-per-class", budget=True), freezes=freezes,
                warmups=_floats(warmup, "--warmup") if warmup else None, ssl_weights=ssl_weights,
                imagenet_weights=imagenet_weights, imagenet_ssl_weights=imagenet_ssl_weights, config=config,
                overrides=list(set_), command="diag " + " ".join(shlex.quote(a) for a in sys.argv[1:]), quiet=quiet,
                jobs=jobs, cluster=cluster, track=track, report=lambda folder: write_report(folder, quiet=quiet))


@app.command()
@friendly
def report(
    studies: List[str] = typer.Argument(..., help="A folder of finished diag train runs (e.g. a compare --out); "
                                        "several, as DIR or NAME=DIR, for the answer across studies."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the answer across the studies given as "
                                       "OUT/answer.md and OUT/answer.html."),
    effect: float = typer.Option(0.05, "--effect", help="The difference of test macro-F1 that matters: an interval "
                                 "holding 0 says 'too few seeds to decide' when the seeds could not detect it."),
) -> None:
    """One folder: write report.html + report.md (the answer, tables, paired statistics with power, figures),
    power.json and runs.csv/summary.csv. Several (or --out): the answer across studies, one table."""
    if len(studies) == 1 and out is None and "=" not in studies[0]:
        from diag.study.report import write_report

        write_report(Path(studies[0]), effect=effect)
        return
    from diag.study.answer import parse_studies, write_answer

    res = write_answer(parse_studies(studies), out, effect=effect)
    typer.echo(res["markdown"])
    if out is not None:
        console.print(f"answer: {out / 'answer.md'} (and answer.html)")


# ------------------------------------------------------------------------------------------------
# diag predict / diag evaluate / diag export


def _names(text: Optional[str]) -> Optional[list[str]]:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


@app.command()
@friendly
def predict(
    run: Path = typer.Argument(..., help="A diag train run folder (or a diag compare cell)."),
    paths: List[Path] = typer.Argument(..., help="Recordings: files (CSV, NPY, NPZ, WAV, MAT) or folders of them."),
    fs: Optional[float] = typer.Option(None, "--fs", help="Sampling rate in Hz for formats that carry none (CSV, NPY, NPZ, MAT)."),
    hop: Optional[int] = typer.Option(None, "--hop", help="Samples between windows (default: the training hop)."),
    channels: Optional[str] = typer.Option(None, "--channels", help="Channels to use, by name, comma-separated."),
    key: Optional[str] = typer.Option(None, "--key", help="Array to read from .npz files holding several."),
    variable: Optional[str] = typer.Option(None, "--variable", help="Variable to read from .mat files holding several."),
    ref_hz: Optional[float] = typer.Option(None, "--ref-hz", help="Order-image runs (envorder / harmonics): the shaft rate / electrical fundamental in Hz of every file (default: each file's metadata, else the run's transform.ref_hz)."),
    rpm: Optional[float] = typer.Option(None, "--rpm", help="The shaft speed in rpm instead of --ref-hz (envorder: --ref-hz RPM/60)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON (schema: docs/scoring.md)."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write one CSV row per file (per window with --windows)."),
    windows: bool = typer.Option(False, "--windows", help="Per-window rows in --csv and a windows list per file in --json."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Folder for one PNG per file: waveform, scalogram, probabilities."),
    calibrate: Optional[Path] = typer.Option(None, "--calibrate", help="Set the run's unknown threshold on this prepared dataset (the run's own, e.g. moved) first."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda[:N]."),
    engine: str = typer.Option("auto", "--engine", help="What runs the network: auto (onnx on a CPU when onnxruntime is installed and --quantize is none, else torch) | torch | onnx (ONNX Runtime on the exported graph, cached in ~/.cache/diag/onnx, CPU; pip install 'diag[onnx]')."),
    quantize: str = typer.Option("none", "--quantize", help="none | int8 (dynamic int8 quantisation of the Linear layers, torch engine, CPU; check its agreement with scripts/bench/bench_predict.py --run RUN --data DATA)."),
    force: bool = typer.Option(False, "--force", help="Replace existing --json / --csv files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table, notes or progress."),
) -> None:
    """Score recordings with a trained run: verdict per file, confidence, top 3, time spans, and unknown."""
    from diag.commands.predict import run_predict

    run_predict(run, paths, fs=fs, hop=hop, channels=_names(channels), json_path=json_out, csv_path=csv_out,
                windows=windows, plot_dir=plot, device=device, force=force, quiet=quiet, key=key, variable=variable,
                calibrate=calibrate, ref_hz=ref_hz, rpm=rpm, engine=engine, quantize=quantize)


@app.command()
@friendly
def evaluate(
    run: Optional[Path] = typer.Argument(None, help="A diag train run folder (not with --held-out)."),
    data: Optional[Path] = typer.Argument(None, help="A prepared dataset (diag prepare) made with the run's preprocessing."),
    split: Optional[str] = typer.Option(None, "--split", help="train | val | test (default test; not with --held-out)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for metrics.json and confusion.png (heldout.json with --held-out)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda[:N] (default cpu; not with --held-out)."),
    held_out: Optional[Path] = typer.Option(None, "--held-out", help="Instead of RUN DATA: a prepared dataset on a recording/group/condition/fault-size split; hold every class out in turn and measure the network-free unknown score on it."),
    far: Optional[float] = typer.Option(None, "--far", help="With --held-out: the false-alarm bound of the threshold (default 0.05, as diag train)."),
    csv: bool = typer.Option(False, "--csv", help="With --held-out: also write heldout.csv (one row per class)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out folder's results."),
) -> None:
    """Score a trained model on a prepared dataset: accuracy, macro-F1, per-class recall, unknown detection.
    With --held-out PREPARED: how well unknown flags each class when it was never seen (no model needed)."""
    from diag.commands.evaluate import run_evaluate, run_held_out

    if held_out is not None:
        given = [n for n, v in (("RUN", run), ("DATA", data), ("--split", split), ("--device", device)) if v is not None]
        if given:
            raise DiagError(f"--held-out {held_out}: takes no {', '.join(given)} (it scores no model); "
                            "drop them, or drop --held-out to score RUN on DATA")
        run_held_out(held_out, out, far=far, csv=csv, force=force)
        return
    if run is None or data is None:
        raise DiagError("diag evaluate needs RUN and DATA (diag evaluate RUN DATA --out DIR), "
                        "or --held-out PREPARED --out DIR")
    given = [n for n, v in (("--far", far), ("--csv", csv or None)) if v is not None]
    if given:
        raise DiagError(f"{', '.join(given)}: only with --held-out PREPARED; drop it to score {run} on {data}")
    run_evaluate(run, data, split=split or "test", out=out, device=device or "cpu", force=force)


@app.command()
@friendly
def export(
    run: Path = typer.Argument(..., help="A diag train run folder."),
    onnx: Path = typer.Option(..., "--onnx", help="ONNX file to write (a .json with the preprocessing goes beside it)."),
    with_transform: bool = typer.Option(False, "--with-transform", help="Also try the window -> image transform inside the graph."),
    force: bool = typer.Option(False, "--force", help="Replace existing files."),
) -> None:
    """Export the classifier to ONNX (dynamic batch) and check it against PyTorch on the validation images."""
    from diag.serving.export import run_export

    run_export(run, onnx, with_transform=with_transform, force=force)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
