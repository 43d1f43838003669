"""Probe the ``sdeflow`` CLI with bad inputs and classify each outcome.

    python -m benchmarks.cli_bad_inputs_probe [--work DIR]

Every case is a user mistake (or a fault such as a full disk) that should end in ONE line
``sdeflow: error: ...`` on stderr and exit status 2. Each run calls `generative.cli.main`
in-process and is classified as

- ``clear``: exit 2 and a one-line ``error:`` message,
- ``garbage``: exit 0 (the mistake went unnoticed and something was written),
- ``hang``: still running after the per-case time limit,
- ``traceback``: an exception escaped ``main`` (or the message was not one line).

A few valid inputs that used to fail (names in `EXPECT_OK`) are run too: ``ok`` when they
exit 0, and they are counted apart from the bad inputs.

Prints one line per case and the counts. Tiny models are trained into ``--work`` first.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch


class _Hang(Exception):
    pass


@contextlib.contextmanager
def _patched(obj: object, name: str, value: object) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _torch_full(*args, **kwargs):
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")


EXPECT_OK = ("sample --n 30000 on a 2-D model (MMD memory)", "sample --n 1 on a 2-D model")

Case = Tuple[str, List[str], Optional[Callable[[], contextlib.AbstractContextManager]]]


def run_case(argv: Sequence[str], ctx=None, limit: int = 30) -> Tuple[str, str]:
    """(outcome, first stderr line / exception) of one CLI run."""
    from generative.cli import main

    def alarm(signum, frame):
        raise _Hang()

    err = io.StringIO()
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(limit)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
                (ctx() if ctx else contextlib.nullcontext()):
            try:
                rc = main(list(argv))
            except SystemExit as exc:
                rc = exc.code
    except _Hang:
        return "hang", ""
    except BaseException as exc:  # noqa: BLE001 - the probe classifies everything
        return "traceback", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    text = err.getvalue().strip()
    lines = [s for s in text.splitlines() if s.strip()]
    if rc == 0:
        return "garbage", text[:120]
    if rc == 2 and lines and "error:" in lines[-1] and "Traceback" not in text:
        return "clear", lines[-1][:160]
    return "traceback", f"rc={rc} {text[-160:]}"


def _fixtures(work: Path) -> dict:
    from generative.cli import main
    common = ["--width", "16", "--depth", "1", "--batch-size", "32", "--no-progress",
              "--log-every", "5"]
    paths = {}
    for name, cmd, data in (("moons", "train", "moons"), ("digits", "train", "digits"),
                            ("clf", "train-classifier", "digits")):
        out = work / name
        if not (out / "checkpoint.pt").is_file():
            with contextlib.redirect_stdout(io.StringIO()):
                assert main([cmd, "--data", data, "--steps", "5", "--out", str(out),
                             *common]) == 0
        paths[name] = out / "checkpoint.pt"
    state = torch.load(paths["clf"], weights_only=True)
    meta = dict(state["state"]["meta"])
    meta.pop("sde")
    state["state"]["meta"] = meta
    paths["clf_nosde"] = work / "clf_nosde.pt"
    torch.save(state, paths["clf_nosde"])
    corrupt = work / "corrupt_run"
    corrupt.mkdir(exist_ok=True)
    (corrupt / "checkpoint.pt").write_bytes(b"not a checkpoint")
    paths["corrupt_run"] = corrupt
    (work / "afile").write_text("x")
    paths["afile"] = work / "afile"
    (work / "adir.png").mkdir(exist_ok=True)
    (work / "adir.json").mkdir(exist_ok=True)
    paths["adir"] = work / "adir.png"
    return paths


def cases(work: Path, p: dict) -> List[Case]:
    m, d = str(p["moons"]), str(p["digits"])
    long = str(work / ("x" * 300 + ".png"))
    f = str(p["afile"])
    tr = ["--data", "moons", "--steps", "2", "--width", "8", "--depth", "1", "--batch-size",
          "16", "--no-progress"]
    tc = ["--data", "digits", "--steps", "2", "--width", "8", "--depth", "1", "--batch-size",
          "16", "--no-progress"]
    s = ["sample", "--ckpt", m, "--sampler", "em", "--nfe", "4", "--n", "8"]
    sd = ["sample", "--ckpt", d, "--sampler", "em", "--nfe", "4", "--n", "8"]
    ip = ["inpaint", "--ckpt", d, "--sampler", "em", "--nfe", "4", "--n", "2"]
    lk = ["likelihood", "--ckpt", m, "--n", "8", "--rtol", "1e-2", "--atol", "1e-2"]
    full = lambda: _patched(torch, "save", _enospc)  # noqa: E731
    tfull = lambda: _patched(torch, "save", _torch_full)  # noqa: E731

    def dist3():
        import generative.cli as cli
        from generative.distributed import DistContext
        stack = contextlib.ExitStack()
        stack.enter_context(_patched(cli, "torchrun_env_present", lambda: True))
        stack.enter_context(_patched(cli, "init_distributed",
                                     lambda **kw: DistContext(rank=0, world_size=3)))
        return stack

    out: List[Case] = []
    for cmd, base in (("train", tr), ("train-classifier", tc)):
        o = str(work / f"o-{cmd}")
        out += [
            (f"{cmd} --out is a file", [cmd, *base, "--out", f], None),
            (f"{cmd} --out under a file", [cmd, *base, "--out", f + "/sub"], None),
            (f"{cmd} --out /proc", [cmd, *base, "--out", "/proc/sdeflow-probe"], None),
            (f"{cmd} --out empty", [cmd, *base, "--out", ""], None),
            (f"{cmd} --out 300 chars", [cmd, *base, "--out", str(work / ("r" * 300))], None),
            (f"{cmd} disk full (OSError)", [cmd, *base, "--out", o + "-full"], full),
            (f"{cmd} disk full (torch)", [cmd, *base, "--out", o + "-tfull"], tfull),
            (f"{cmd} --resume corrupt", [cmd, *base, "--out", str(p["corrupt_run"]),
                                         "--resume"], None),
            (f"{cmd} --batch-size 10**12", [cmd, *base, "--out", o + "-big",
                                            "--batch-size", str(10**12)], None),
            (f"{cmd} --data is a directory", [cmd, *base, "--out", o + "-d", "--data",
                                              str(work)], None),
            (f"{cmd} --ema-decay 2", [cmd, *base, "--out", o + "-ema", "--ema-decay", "2"],
             None),
            (f"{cmd} --warmup -1", [cmd, *base, "--out", o + "-w", "--warmup", "-1"], None),
            (f"{cmd} --lr 1e30 (loss diverges)", [cmd, *base, "--out", o + "-lr", "--lr",
                                                  "1e30", "--warmup", "0"], None),
        ]
    out += [("train torchrun --batch-size 16 over 3", [*["train", *tr], "--out",
                                                       str(work / "o-dist")], dist3)]
    for name, base, ext in (("sample", s, ".png"), ("inpaint", ip, ".png")):
        out += [
            (f"{name} --out a.txt", [*base, "--out", str(work / f"{name}.txt")], None),
            (f"{name} --out x.pt", [*base, "--out", str(work / f"{name}.pt")], None),
            (f"{name} --out x.json", [*base, "--out", str(work / f"{name}.json")], None),
            (f"{name} --out no suffix", [*base, "--out", str(work / f"{name}-nosuffix")], None),
            (f"{name} --out directory", [*base, "--out", str(p["adir"])], None),
            (f"{name} --out under a file", [*base, "--out", f + "/s.png"], None),
            (f"{name} --out /proc", [*base, "--out", "/proc/sdeflow.png"], None),
            (f"{name} --out empty", [*base, "--out", ""], None),
            (f"{name} --out 300 chars", [*base, "--out", long], None),
            (f"{name} disk full (OSError)", [*base, "--out", str(work / f"{name}-f.png")], full),
            (f"{name} disk full (torch)", [*base, "--out", str(work / f"{name}-t.png")], tfull),
            (f"{name} --ckpt is a directory", [name, "--ckpt", str(work), "--out",
                                               str(work / f"{name}-c.png")], None),
            (f"{name} --n 10**12", [*base, "--n", str(10**12), "--out",
                                    str(work / f"{name}-n.png")], None),
            (f"{name} --nfe 10**12", [*base, "--nfe", str(10**12), "--out",
                                      str(work / f"{name}-e.png")], None),
        ]
    out += [
        ("inpaint on a 2-D model", ["inpaint", "--ckpt", m, "--sampler", "em", "--nfe", "4",
                                    "--n", "2", "--out", str(work / "ip2d.png")], None),
        ("sample --classifier lacks 'sde'", [*sd, "--class", "1", "--guidance", "classifier",
                                             "--classifier", str(p["clf_nosde"]), "--out",
                                             str(work / "g.png")], None),
        ("sample --classifier corrupt", [*sd, "--class", "1", "--guidance", "classifier",
                                         "--classifier", str(p["corrupt_run"] / "checkpoint.pt"),
                                         "--out", str(work / "g2.png")], None),
        ("sample --classifier directory", [*sd, "--class", "1", "--guidance", "classifier",
                                           "--classifier", str(work), "--out",
                                           str(work / "g3.png")], None),
        ("sample --classifier = a model", [*sd, "--class", "1", "--guidance", "classifier",
                                           "--classifier", d, "--out", str(work / "g4.png")],
         None),
        ("sample --n 30000 on a 2-D model (MMD memory)",
         [*s, "--n", "30000", "--nfe", "4", "--out", str(work / "n3e4.png")], None),
        ("sample --n 1 on a 2-D model", [*s, "--n", "1", "--out", str(work / "n1.png")], None),
        ("sample --n-corrector -1", [*s, "--sampler", "pc", "--n-corrector", "-1", "--out",
                                     str(work / "nc.png")], None),
        ("likelihood --out directory", [*lk, "--out", str(work / "adir.json")], None),
        ("likelihood --out /proc", [*lk, "--out", "/proc/x.json"], None),
        ("likelihood --out empty", [*lk, "--out", ""], None),
        ("likelihood --out 300 chars", [*lk, "--out", str(work / ("l" * 300 + ".json"))], None),
        ("likelihood --out a.png", [*lk, "--out", str(work / "lk.png")], None),
        ("likelihood --out under a file", [*lk, "--out", f + "/x.json"], None),
        ("likelihood --density-plot a.txt", [*lk, "--density-plot", str(work / "d.txt")], None),
        ("likelihood --density-plot directory", [*lk, "--density-plot", str(p["adir"])], None),
        ("likelihood --density-plot /proc", [*lk, "--density-plot", "/proc/d.png"], None),
        ("likelihood --density-plot empty", [*lk, "--density-plot", ""], None),
        ("likelihood --density-plot == --out", [*lk, "--density-plot", str(work / "same.png"),
                                                "--out", str(work / "same.png")], None),
        ("likelihood disk full (OSError, --out)", [*lk, "--out", str(work / "lfull.json")],
         lambda: _patched(Path, "write_text", _enospc)),
        ("likelihood --ckpt is a directory", ["likelihood", "--ckpt", str(work)], None),
        ("demo --out is a file", ["demo", "--quick", "--no-progress", "--out", f], None),
        ("demo --out /proc", ["demo", "--quick", "--no-progress", "--out", "/proc/demo"], None),
        ("demo --out empty", ["demo", "--quick", "--no-progress", "--out", ""], None),
        ("demo --out 300 chars", ["demo", "--quick", "--no-progress", "--out",
                                  str(work / ("d" * 300))], None),
    ]
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=None, help="work directory (default: a temporary one)")
    ap.add_argument("--only", default=None, help="run the cases whose name contains this")
    ap.add_argument("--skip", default=None, help="skip the cases whose name contains this")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="sdeflow-probe-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SDEFLOW_CACHE", str(work / "cache"))
    os.chdir(work)  # whatever a mistake writes into "the current directory" lands here
    p = _fixtures(work)
    counts = {"clear": 0, "garbage": 0, "hang": 0, "traceback": 0}
    valid = {"ok": 0, "failed": 0}
    for name, argv_, ctx in cases(work, p):
        if (args.only and args.only not in name) or (args.skip and args.skip in name):
            continue
        outcome, detail = run_case(argv_, ctx)
        if name in EXPECT_OK:
            outcome = "ok" if outcome == "garbage" else outcome
            valid["ok" if outcome == "ok" else "failed"] += 1
        else:
            counts[outcome] += 1
        print(f"{outcome:9s} {name:42s} {detail}", flush=True)
    print(f"bad inputs tried {sum(counts.values())}: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"valid inputs tried {sum(valid.values())}: ok {valid['ok']}, failed {valid['failed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
