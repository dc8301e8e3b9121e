"""Fuzz harness for the CLI: a worker process that runs cases in-process, the cases (mutated
shipped configs, presets, model specs, pipelines and odd arguments, drawn by hypothesis), and
the checks every case must pass (issue 14).

A case runs in :mod:`fuzz_worker` through typer's ``CliRunner`` (about 1 ms of overhead, where a
``codesign`` subprocess pays about a second of imports). The parent watches it: over
:data:`CASE_TIMEOUT_S` or :data:`MEMORY_LIMIT_BYTES` resident, the worker is killed, the case is
a finding, and the next case starts a fresh worker.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
import select
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
CASE_TIMEOUT_S = 30.0
MEMORY_LIMIT_BYTES = 1 << 30
#: Exit codes a case may end with: ok, bad input, usage, empty front (docs/cli.md).
ALLOWED_EXIT_CODES = (0, 1, 2, 3)

EXAMPLE_CONFIGS = sorted((ROOT / "codesign" / "examples").glob("*.toml"))
PRESETS = sorted((ROOT / "targets" / "presets").glob("*.yaml"))
SPECS = sorted((ROOT / "ir" / "frontends" / "zoo").glob("*.yaml"))
PIPELINES = sorted((ROOT / "examples" / "pipelines").glob("*.yaml"))
#: Zoo specs small enough to lower and cost in milliseconds (the fuzz mutates these).
SMALL_SPECS = [p for p in SPECS if "rm-small" in p.name or "ncf" in p.name or "rmc1" in p.name]

# --- the worker ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one case did: exit code, output, an escaped exception, peak memory, or a hang."""

    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    escaped: str | None = None
    stray: str = ""
    peak_rss_bytes: int = 0
    seconds: float = 0.0
    killed: str = ""  # "timeout" or "memory" when the parent killed the worker


class FuzzWorker:
    """One long-lived ``fuzz_worker`` process; restarted after a kill."""

    def __init__(self, log_dir: Path, *, timeout_s: float = CASE_TIMEOUT_S) -> None:
        self.log_dir = log_dir
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen | None = None
        self.reply_fd = -1
        self.buffer = b""
        self.starts = 0

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        env = {k: v for k, v in os.environ.items() if k != "CODESIGN_DEBUG"}
        env["CODESIGN_CACHE_DIR"] = str(self.log_dir / "cache")
        env["COLUMNS"] = "160"
        self.starts += 1
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("fuzz_worker.py")),
                str(write_fd),
                str(self.log_dir / f"worker-{self.starts}.log"),
            ],
            stdin=subprocess.PIPE,
            pass_fds=(write_fd,),
            env=env,
            cwd=self.log_dir,
            start_new_session=True,
        )
        os.close(write_fd)
        self.reply_fd = read_fd
        self.buffer = b""
        ready = self._read_line(deadline=time.monotonic() + 120.0)
        if ready is None or not json.loads(ready).get("ready"):
            self.stop()
            raise RuntimeError("fuzz worker did not start")

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc = None
        if self.reply_fd >= 0:
            os.close(self.reply_fd)
            self.reply_fd = -1

    def run(self, args: list[str], cwd: Path) -> Outcome:
        if self.proc is None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        began = time.monotonic()
        self.proc.stdin.write((json.dumps({"args": args, "cwd": str(cwd)}) + "\n").encode())
        self.proc.stdin.flush()
        line = self._read_line(deadline=began + self.timeout_s, watch_memory=True)
        seconds = time.monotonic() - began
        if isinstance(line, Outcome):  # killed
            line.seconds = seconds
            return line
        if line is None:  # the worker died on its own (a crash of the interpreter)
            code = self.proc.poll()
            self.stop()
            return Outcome(exit_code=None, seconds=seconds, killed=f"worker died ({code})")
        data = json.loads(line)
        return Outcome(seconds=seconds, **data)

    def _read_line(self, *, deadline: float, watch_memory: bool = False) -> Any:
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                return Outcome(exit_code=None, killed="timeout")
            ready, _, _ = select.select([self.reply_fd], [], [], min(left, 0.05))
            if watch_memory and self.proc is not None:
                rss = _rss_bytes(self.proc.pid)
                if rss > MEMORY_LIMIT_BYTES:
                    self.stop()
                    return Outcome(exit_code=None, peak_rss_bytes=rss, killed="memory")
            if ready:
                chunk = os.read(self.reply_fd, 1 << 20)
                if not chunk:
                    return None
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            match = re.search(r"VmRSS:\s+(\d+) kB", fh.read())
    except OSError:
        return 0
    return int(match.group(1)) * 1024 if match else 0


# --- cases --------------------------------------------------------------------------------------


@dataclass
class Case:
    """A CLI call and the files it needs. ``args`` may hold ``{dir}`` (the case's folder);
    ``files`` maps a name in that folder to bytes, or to ``"<fifo>"`` / ``"<dir>"``. ``names``
    are the words (keys, options, file names) an error message may name."""

    family: str
    args: list[str]
    files: dict[str, Any] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    what: str = ""

    def materialize(self, folder: Path) -> list[str]:
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in self.files.items():
            path = folder / name
            if content == "<fifo>":
                os.mkfifo(path)
            elif content == "<dir>":
                path.mkdir()
            else:
                path.write_bytes(content)
        return [a.replace("{dir}", str(folder)) for a in self.args]


ODD_NUMBERS = [
    math.nan,
    math.inf,
    -math.inf,
    -1,
    0,
    1,
    -1.5,
    0.5,
    1e30,
    -1e30,
    1e-300,
    10**30,
    2**63,
    -(2**63),
    10**400,
    2**31,
]
ODD_TEXT = ["", " ", "x" * 5000, "../../x", "/", "\u00e9\u4e2d", "nan", "-1", "a\nb", "0x10"]
ODD_ARG_TEXT = [
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1",
    "1e30",
    str(10**30),
    str(2**63),
    "",
    "abc",
    "1.5",
    "0x10",
    " 5",
]


def _odd_value(draw: Any) -> Any:
    """A value of a wrong type or an edge of its range; a fresh copy (later mutations may add to
    it, and the pool must not change between cases)."""
    return copy.deepcopy(_draw_odd(draw))


def _draw_odd(draw: Any) -> Any:
    return draw(
        st.one_of(
            st.sampled_from(ODD_NUMBERS),
            st.sampled_from(ODD_TEXT),
            st.sampled_from([True, False, [], {}, [1, "a"], {"x": 1}, [[1]], [None]]),
            st.integers(min_value=-(2**70), max_value=2**70),
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(max_size=30),
        )
    )


#: Valid names a nudged name may become (models, targets, objectives, choices).
NAMES = [
    "rm-small",
    "rm-large",
    "dlrm-rmc1",
    "ncf",
    "cpu/cascadelake",
    "gpu/nvidia/t4",
    "accel/rpaccel",
    "quality",
    "p95_latency_s",
    "energy_j",
    "area_mm2",
    "random",
    "nsga2",
    "two-level",
    "ws",
    "os",
]


def _nudged(draw: Any, value: Any) -> Any:
    """``value`` moved to an edge of what its type allows: 0, 1, doubled, tiny or huge."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return draw(st.sampled_from([0, 1, 2, value * 2, value // 2, value + 1, 10**6, 2**31 - 1]))
    if isinstance(value, float):
        return draw(st.sampled_from([1e-300, 1e-9, 0.001, value * 1000, value / 1000, 1e12]))
    if isinstance(value, str):
        return draw(st.sampled_from([*NAMES, value.upper(), value + " "]))
    if isinstance(value, list):
        return draw(st.sampled_from([[], value[:1], value + value, list(reversed(value))]))
    return _odd_value(draw)


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into nested dicts/lists (the places a mutation may hit)."""
    out: list[tuple] = []
    if isinstance(data, dict):
        for key, value in data.items():
            out.append((*prefix, key))
            out += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.append((*prefix, i))
            out += _paths(value, (*prefix, i))
    return out


def _parent(data: Any, path: tuple) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


def _mutate(draw: Any, doc: Any) -> tuple[Any, list[str]]:
    """One to three structural mutations of a parsed document; returns it and the keys hit."""
    doc = copy.deepcopy(doc)
    hit: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        key = path[-1]
        hit += [str(k) for k in path if isinstance(k, str)]
        action = draw(
            st.sampled_from(["replace", "replace", "nudge", "nudge", "delete", "add", "wrap"])
        )
        if action == "nudge":  # a value of the right type, often valid: reaches the run
            parent[key] = _nudged(draw, parent[key])
        elif action == "replace":
            parent[key] = _odd_value(draw)
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            extra = draw(st.sampled_from(["bogus_key", "Version", "x" * 300]))
            parent[extra] = _odd_value(draw)
            hit.append(extra[:50])
        elif action == "add":
            parent.append(_odd_value(draw))
        else:
            parent[key] = [parent[key]] if draw(st.booleans()) else {"x": parent[key]}
    return doc, hit


def _text_mutation(draw: Any, text: str, kind: str) -> tuple[bytes, str]:
    """Damage at the text level: what a parser sees before any field is checked."""
    action = draw(
        st.sampled_from(
            ["truncate", "junk", "nest", "duplicate", "bomb", "big", "bom", "empty", "null"]
        )
    )
    if action == "truncate":
        return text[: draw(st.integers(0, max(len(text) - 1, 0)))].encode(), action
    if action == "junk":
        blob = draw(st.binary(min_size=1, max_size=200))
        cut = draw(st.integers(0, len(text)))
        return text[:cut].encode() + blob + text[cut:].encode(), action
    if action == "nest":
        depth = draw(st.sampled_from([200, 5000, 50_000]))
        if kind == "json":  # still valid JSON: a deep list beside the plan's own keys
            deep = '{"deep": ' + "[" * depth + "]" * depth + ", "
            return (deep + text.lstrip().removeprefix("{")).encode(), action
        if kind == "toml":
            return (text + "\ndeep = " + "[" * depth + "]" * depth + "\n").encode(), action
        return (text + "\ndeep: " + "[" * depth + "]" * depth + "\n").encode(), action
    if action == "duplicate":
        first = text.splitlines()
        keyed = [ln for ln in first if re.match(r"^[a-z_]+\s*[=:]", ln)]
        line = draw(st.sampled_from(keyed)) if keyed else "version = 1"
        return (text + "\n" + line + "\n").encode(), action
    if action == "bomb":
        if kind == "json":  # a wide list that is still valid JSON
            return ('{"wide": [' + "1," * 200_000 + "1], " + text.lstrip()[1:]).encode(), action
        if kind == "toml":
            # TOML has no aliases: a wide array is its nearest bomb
            return (text + "\nwide = [" + "1," * 200_000 + "]\n").encode(), action
        bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        for i, name in enumerate("bcdefghi"):
            prev = "abcdefghi"[i]
            bomb.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        return (text + "\n" + "\n".join(bomb) + "\n").encode(), action
    if action == "big":
        size = draw(st.sampled_from([1_000_000, 5_000_000]))
        filler = ("# " + "y" * 97 + "\n") if kind == "toml" else ("k: " + "y" * 96 + "\n")
        return (text + filler * (size // 100)).encode(), action
    if action == "bom":
        return b"\xef\xbb\xbf" + text.encode(), action
    if action == "empty":
        return b"", action
    return text.encode() + b"\x00" * 10, action


# --- TOML out (no writer is installed; the fuzz needs nan, inf and mixed arrays) ---------------


def to_toml(doc: dict) -> str:
    lines: list[str] = []
    tables: list[tuple[str, dict]] = []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append((_toml_key(key), value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for name, table in tables:
        lines += _toml_table(name, table)
    return "\n".join(lines) + "\n"


def _toml_table(name: str, table: dict) -> list[str]:
    lines = [f"[{name}]"]
    subs = []
    for key, value in table.items():
        if isinstance(value, dict):
            subs.append((f"{name}.{_toml_key(key)}", value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for sub_name, sub in subs:
        lines += _toml_table(sub_name, sub)
    return lines


def _toml_key(key: Any) -> str:
    key = str(key)
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    return '""'  # None: TOML has no null


# --- the shipped inputs, steered to be fast ------------------------------------------------------


def steered_config(path: Path) -> dict:
    """A shipped run config made cheap to run: quality from the shipped table (no training; its
    section first, so that a truncated file keeps it or loses the workload too), few simulated
    queries, one stage, one sampler over everything. The fuzz mutates this."""
    doc = tomllib.loads(_text(path))
    doc.pop("quality", None)
    workload = doc.pop("workload")
    workload.update(candidates=1024, keep=64, queries=300, warmup=50)
    workload["models"] = [m for m in workload["models"] if m.startswith("rm-")] or ["rm-small"]
    doc["quality"] = {"source": "table", "metric": "ndcg_recpipe@64"}
    doc["workload"] = workload
    doc["space"] = doc.pop("space")
    doc["space"]["max_stages"] = 1
    for section in ("objectives", "constraints", "search"):
        if section in doc:
            doc[section] = doc.pop(section)
    doc["objectives"]["names"] = [n for n in doc["objectives"]["names"] if n != "max_qps"]
    doc.setdefault("search", {})["strategy"] = "joint"
    return doc


def _no_training(doc: Any) -> None:
    """Keep a mutated run config off the replay source (it would train models for minutes)."""
    if not isinstance(doc, dict):
        return
    quality = doc.setdefault("quality", {"source": "table"})
    if isinstance(quality, dict) and quality.get("source", "replay") == "replay":
        quality["source"] = "table"


@functools.cache
def _text(path: Path) -> str:
    """A shipped file's text, read once: generation must not change if the file does mid-run."""
    return path.read_text()


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(_text(path))


# --- the strategy -----------------------------------------------------------------------------


FAMILIES = ("config", "config_text", "preset", "spec", "pipeline", "plan", "argument")


@st.composite
def fuzz_cases(draw: Any, family: str | None = None, plan_text: str | None = None) -> Case:
    """A case of ``family`` (any when None); the plan family needs ``plan_text`` (a plan a run
    wrote)."""
    if family is None:
        family = draw(st.sampled_from([f for f in FAMILIES if plan_text or f != "plan"]))
    if family == "plan":
        return _plan_case(draw, plan_text)
    if family in YAML_FAMILIES:
        return _yaml_case(draw, family)
    return {
        "config": _config_case,
        "config_text": _config_text_case,
        "argument": _argument_case,
    }[family](draw)


def _plan_case(draw: Any, plan_text: str) -> Case:
    if draw(st.integers(0, 3)) == 0:
        content, action = _text_mutation(draw, plan_text, "json")
        hit, what = [], action
    else:
        doc, hit = _mutate(draw, json.loads(plan_text))
        content, what = json.dumps(doc, allow_nan=True).encode(), str(hit)
    command = draw(
        st.sampled_from(
            [
                ["plan", "show", "{dir}/plan.json"],
                ["plan", "show", "{dir}/plan.json", "--json"],
                ["plan", "evaluate", "{dir}/plan.json", "--queries", "200"],
            ]
        )
    )
    return Case("plan", command, files={"plan.json": content}, names=[*hit, "plan.json"], what=what)


def _optimize_args(config: str) -> list[str]:
    return ["optimize", config, "--trials", "1", "--out", "{dir}/run"]


def _config_case(draw: Any) -> Case:
    source = draw(st.sampled_from(EXAMPLE_CONFIGS))
    doc, hit = _mutate(draw, steered_config(source))
    _no_training(doc)
    return Case(
        "config",
        _optimize_args("{dir}/run.toml"),
        files={"run.toml": to_toml(doc).encode()},
        names=[*hit, "run.toml"],
        what=f"{source.name}: {hit}",
    )


def _config_text_case(draw: Any) -> Case:
    source = draw(st.sampled_from(EXAMPLE_CONFIGS))
    content, action = _text_mutation(draw, to_toml(steered_config(source)), "toml")
    return Case(
        "config_text",
        _optimize_args("{dir}/run.toml"),
        files={"run.toml": content},
        names=["run.toml"],
        what=f"{source.name}: {action}",
    )


def _yaml_file(draw: Any, source: Path) -> tuple[bytes, list[str], str]:
    if draw(st.integers(0, 3)) == 0:
        content, action = _text_mutation(draw, _text(source), "yaml")
        return content, [], action
    doc, hit = _mutate(draw, _load_yaml(source))
    return yaml.safe_dump(doc, allow_unicode=True).encode(), hit, str(hit)


#: The YAML families: the shipped files mutated, the name each is written under, and the
#: commands that read it.
YAML_FAMILIES: dict[str, tuple[Any, str, list[list[str]]]] = {
    "preset": (
        PRESETS,
        "preset.yaml",
        [
            ["targets", "show", "{dir}/preset.yaml"],
            ["cost", "rm-small", "--target", "{dir}/preset.yaml"],
        ],
    ),
    "spec": (
        SMALL_SPECS,
        "spec.yaml",
        [
            ["models", "show", "{dir}/spec.yaml", "--json"],
            ["cost", "{dir}/spec.yaml", "--target", "cpu/cascadelake", "--json"],
        ],
    ),
    "pipeline": (
        PIPELINES,
        "pipe.yaml",
        [
            ["pipeline", "validate", "{dir}/pipe.yaml"],
            ["pipeline", "evaluate", "{dir}/pipe.yaml", "--qps", "100", "--queries", "300"],
        ],
    ),
}


def _yaml_case(draw: Any, family: str) -> Case:
    sources, name, commands = YAML_FAMILIES[family]
    source = draw(st.sampled_from(sources))
    content, hit, what = _yaml_file(draw, source)
    command = draw(st.sampled_from(commands))
    return Case(
        family,
        command,
        files={name: content},
        names=[*hit, name],
        what=f"{source.name}: {what}",
    )


#: (command, option, and the rest of a cheap call) for the odd-argument family.
ARGUMENT_SLOTS: list[tuple[list[str], str]] = [
    (["optimize", "{config}", "--trials", "1", "--out", "{dir}/run"], "--trials"),
    (["optimize", "{config}", "--trials", "1", "--out", "{dir}/run"], "--seed"),
    (["optimize", "{config}", "--trials", "1", "--out", "{dir}/run"], "--inner-trials"),
    (["optimize", "{config}", "--trials", "1", "--out", "{dir}/run"], "--time-budget"),
    (["optimize", "{config}", "--trials", "1", "--out", "{dir}/run"], "--sampler"),
    (["optimize", "{config}", "--trials", "1", "--out", "{dir}/run"], "--strategy"),
    (["optimize", "{config}", "--trials", "1", "--out", "{dir}/run"], "--cost-model"),
    (["optimize", "{config}", "--trials", "1"], "--out"),
    (["optimize", "{config}", "--trials", "1", "--out", "{dir}/run"], "--storage"),
    (["pipeline", "evaluate", "{pipeline}", "--qps", "100", "--queries", "300"], "--qps"),
    (["pipeline", "evaluate", "{pipeline}", "--qps", "100", "--queries", "300"], "--sla-ms"),
    (["pipeline", "evaluate", "{pipeline}", "--qps", "100"], "--queries"),
    (["pipeline", "evaluate", "{pipeline}", "--qps", "100", "--queries", "300"], "--seed"),
    (["models", "show", "rm-small"], "--batch"),
    (["models", "show", "rm-small"], "--passes"),
    (["models", "show", "rm-small"], "--save-ir"),
    (["cost", "rm-small", "--target", "accel/rpaccel"], "--batch"),
    (["cost", "rm-small", "--target", "accel/rpaccel"], "--keep"),
    (["cost", "rm-small", "--target", "accel/rpaccel"], "--set"),
    (["cost", "rm-small", "--target", "cpu/cascadelake"], "--trace"),
    (["cost", "gemm", "--m", "8", "--k", "8", "--n", "8", "--target", "accel/rpaccel"], "--m"),
    (["quality", "table"], "--k"),
    (["quality", "table"], "--items"),
    (["report"], ""),
    (["worker"], ""),
    (["plan", "show"], ""),
    (["plan", "evaluate"], ""),
    (["models", "show"], ""),
    (["targets", "show"], ""),
    (["pipeline", "validate"], ""),
    (["optimize"], ""),
    (["cost", "--target", "cpu/cascadelake"], ""),
]
#: Special files an argument may point at.
ODD_FILES = ["<missing>", "<missing-dir>", "<fifo>", "<dir>", "/dev/zero", "<junk>", "<long>"]


def _argument_case(draw: Any) -> Case:
    command, option = draw(st.sampled_from(ARGUMENT_SLOTS))
    files: dict[str, Any] = {}
    config = to_toml(steered_config(EXAMPLE_CONFIGS[0]))
    files["run.toml"] = config.encode()
    args = [
        a.replace("{config}", "{dir}/run.toml").replace("{pipeline}", str(PIPELINES[1]))
        for a in command
    ]
    if draw(st.booleans()) or option in ("", "--out", "--save-ir", "--trace", "--storage"):
        odd = draw(st.sampled_from(ODD_FILES))
        value = _odd_file(odd, files)
        if option == "--storage":
            value = draw(st.sampled_from(["sqlite:///", "journal:", "postgresql://", ""])) + value
        if option == "--set":
            value = f"rows={value}"
    else:
        value = draw(st.sampled_from(ODD_ARG_TEXT))
        if option == "--set":
            value = draw(st.sampled_from(["rows", "bogus", "", "rows=1=2", "=3"])) + (
                "=" + value if draw(st.booleans()) else ""
            )
    args = [*args, option, value] if option else [*args, value]
    names = [option] if option else []
    names += [value[:100]] if value and ("/" in value or not option) else []
    return Case(
        "argument", args, files=files, names=names, what=f"{option or 'arg'}={value[:60]!r}"
    )


def _odd_file(kind: str, files: dict[str, Any]) -> str:
    if kind == "<missing>":
        return "{dir}/missing.yaml"
    if kind == "<missing-dir>":
        return "{dir}/no/such/dir/out.json"
    if kind == "<fifo>":
        files["fifo"] = "<fifo>"
        return "{dir}/fifo"
    if kind == "<dir>":
        files["adir"] = "<dir>"
        return "{dir}/adir"
    if kind == "<junk>":
        files["junk.yaml"] = bytes(range(256)) * 4
        return "{dir}/junk.yaml"
    if kind == "<long>":
        return "{dir}/" + "p" * 5000
    return kind


# --- checks -----------------------------------------------------------------------------------


def check(case: Case, args: list[str], outcome: Outcome) -> list[str]:
    """The problems one case shows (an empty list when it passed): each a cause word, then what."""
    problems = []
    if outcome.killed == "timeout":
        problems.append(f"hang: over {CASE_TIMEOUT_S:.0f} s")
    elif outcome.killed == "memory":
        problems.append(f"memory: worker over {MEMORY_LIMIT_BYTES >> 20} MiB resident")
    elif outcome.killed:
        problems.append(f"crash: {outcome.killed}")
    else:
        if outcome.exit_code not in ALLOWED_EXIT_CODES:
            problems.append(f"exit code {outcome.exit_code}")
        if outcome.escaped is not None:
            problems.append("traceback: " + outcome.escaped.strip().splitlines()[-1][:200])
        for stream in (outcome.stdout, outcome.stderr, outcome.stray):
            if "Traceback" in stream:
                problems.append("traceback in output: " + stream.strip().splitlines()[-1][:200])
                break
        if outcome.peak_rss_bytes > MEMORY_LIMIT_BYTES:
            problems.append(f"memory: peak {outcome.peak_rss_bytes >> 20} MiB")
        if outcome.exit_code in (1, 2) and outcome.escaped is None:
            message = error_line(outcome.stderr)
            if message is None:
                problems.append(f"no error line: {outcome.stderr.strip()[:200]!r}")
            elif not names_something(message, case, args):
                problems.append(f"unnamed: {message[:200]}")
    return problems


def error_line(stderr: str) -> str | None:
    for line in stderr.splitlines():
        if line.startswith(("error:", "usage:")):
            return line
    return None


def names_something(message: str, case: Case, args: list[str]) -> bool:
    """An error names a field or a file when it holds one of: a key the case mutated, an option
    the call passed, a file name or path (or its first 100 characters) the call passed, or the
    command's positional name."""
    words = [n for n in case.names if n]
    for arg in args:
        if arg.startswith("--"):
            words.append(arg)
        elif "/" in arg or arg.endswith((".toml", ".yaml", ".json")):
            path = re.sub(r"^(sqlite|postgresql|journal)[^:/]*:(///?)?", "", arg)  # a URL's file
            words += [arg[:100], path[:100], Path(path[:4000]).name[:100]]
    return any(w in message for w in words)
