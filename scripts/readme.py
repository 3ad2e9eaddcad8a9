"""Run the README's examples, in order, in a fresh folder: check them, or rewrite their output.

    python scripts/readme.py            # check: every command exits as shown, its words still appear
    python scripts/readme.py --write    # run and write the real output back into README.md

What runs: each ```console block's `$ command` lines (a trailing backslash continues a line), in
one working folder, with `.venv/bin` first on PATH, `PROGBENCH_CACHE=<folder>/cache`, and a
100-column terminal (rich's TTY_COMPATIBLE, no colour, no live animation). The lines after a
command, up to the next `$`, are its output (stdout and stderr). `$ echo $?` prints the exit code
of the command before it; every other command must exit 0.

A comment line before a block directs it:
- `<!-- readme: file=NAME -->` before a ```yaml block writes the block to NAME (not run);
- `<!-- readme: skip -->`: shown, never run (e.g. `make demo`, which is `progbench demo`);
- `<!-- readme: slow -->`: run by --write only (checked by its own tests);
- `<!-- readme: needs=slurm -->`: run only when `sinfo` answers (else left as it is);
- `<!-- readme: head=N -->`: keep the first N lines of each output, then `...`.

The check compares words, not bytes (timings, keys and table widths change from run to run):
every word of four letters or more in the README's output of a command must appear in its real
output. Paths under the working folder are written relative to it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DIRECTIVE = re.compile(r"^<!-- readme: (.*) -->\s*$")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
# Whole words only: not the letters inside a store key such as 4573a0dace5ca5c7.
WORD = re.compile(r"(?<![A-Za-z0-9])[A-Za-z][A-Za-z_-]{3,}(?![A-Za-z0-9])")


@dataclass
class Command:
    text: str  # the command, continuation lines joined as shown
    output: list[str] = field(default_factory=list)


@dataclass
class Block:
    start: int  # index of the opening fence line
    end: int  # index of the closing fence line
    lang: str
    options: dict[str, str]
    commands: list[Command] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list)  # lines before the first command


def parse(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w+)\s*$", lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j] != "```":
            j += 1
        options: dict[str, str] = {}
        k = i - 1
        while k >= 0 and (d := DIRECTIVE.match(lines[k])):
            for part in d.group(1).split():
                key, _, value = part.partition("=")
                options[key] = value
            k -= 1
        block = Block(i, j, m.group(1), options)
        body = lines[i + 1 : j]
        n = 0
        while n < len(body):
            line = body[n]
            if line.startswith("$ "):
                text = line[2:]
                while text.endswith("\\") and n + 1 < len(body):
                    n += 1
                    text += "\n" + body[n]
                block.commands.append(Command(text))
            elif block.commands:
                block.commands[-1].output.append(line)
            else:
                block.prefix.append(line)
            n += 1
        blocks.append(block)
        i = j + 1
    return blocks


def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PROGBENCH_CACHE=str(work / "cache"),
        COLUMNS="100",
        LINES="50",
        TTY_COMPATIBLE="1",
        TTY_INTERACTIVE="0",
        NO_COLOR="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("FORCE_COLOR", None)
    return env


def _clean(raw: str, work: Path, head: int | None) -> list[str]:
    text = ANSI.sub("", raw).replace("\r\n", "\n")
    text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))
    for prefix in (str(work.resolve()) + "/", str(work) + "/"):
        text = text.replace(prefix, "")
    out = [line.rstrip() for line in text.rstrip("\n").split("\n")] if text.strip() else []
    if head is not None and len(out) > head:
        out = [*out[:head], "..."]
    return out


def _words(lines: list[str]) -> set[str]:
    return {w for line in lines for w in WORD.findall(line)}


def _has_slurm() -> bool:
    try:
        return subprocess.run(["sinfo"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def run(write: bool, work: Path, timeout: int, readme_path: Path = README) -> int:
    lines = readme_path.read_text().split("\n")
    blocks = parse(lines)
    env = _env(work)
    slurm = _has_slurm()
    problems: list[str] = []
    last_rc = 0
    replace: dict[int, list[str]] = {}  # block start -> new body
    for block in blocks:
        opts = block.options
        if "file" in opts:
            (work / opts["file"]).write_text("\n".join(lines[block.start + 1 : block.end]) + "\n")
            continue
        if block.lang != "console" or not block.commands or "skip" in opts:
            continue
        if ("slow" in opts and not write) or (opts.get("needs") == "slurm" and not slurm):
            print(f"-- not run ({', '.join(opts)}): {block.commands[0].text.splitlines()[0]}")
            continue
        head = int(opts["head"]) if "head" in opts else None
        body = list(block.prefix)
        for i, cmd in enumerate(block.commands):
            if cmd.text.strip() == "echo $?":
                got = [str(last_rc)]
            else:
                t0 = time.perf_counter()
                print(f"$ {cmd.text}", flush=True)
                proc = subprocess.run(
                    ["bash", "-c", cmd.text],
                    cwd=work,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=timeout,
                )
                last_rc = proc.returncode
                got = _clean(proc.stdout, work, head)
                print(f"   exit {last_rc}, {time.perf_counter() - t0:.1f} s", flush=True)
                following = block.commands[i + 1] if i + 1 < len(block.commands) else None
                expected = (
                    int(following.output[0])
                    if following and following.text.strip() == "echo $?" and following.output
                    else 0
                )
                if last_rc != expected:
                    tail = "\n".join(got[-15:])
                    problems.append(f"`{cmd.text}` exited {last_rc}, expected {expected}:\n{tail}")
                missing = sorted(_words(cmd.output) - _words(got))
                if missing and not write:
                    problems.append(f"`{cmd.text}`: words of the README missing now: {missing}")
            body += [f"$ {cmd.text}", *got]
        replace[block.start] = body
    if write:
        out: list[str] = []
        i = 0
        by_start = {b.start: b for b in blocks}
        while i < len(lines):
            if i in replace:
                block = by_start[i]
                out += [lines[i], *replace[i], lines[block.end]]
                i = block.end + 1
                continue
            out.append(lines[i])
            i += 1
        readme_path.write_text("\n".join(out))
        print(f"wrote {readme_path}")
    for p in problems:
        print(f"\nPROBLEM: {p}", file=sys.stderr)
    return 1 if problems else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the real output into README.md")
    ap.add_argument("--workdir", type=Path, help="run here (kept); default: a temporary folder")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per command")
    args = ap.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        sys.exit(run(args.write, args.workdir.resolve(), args.timeout))
    work = Path(tempfile.mkdtemp(prefix="progbench-readme-"))
    try:
        code = run(args.write, work, args.timeout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
