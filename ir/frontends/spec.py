"""Model specs: YAML documents (``version: 1``, ``kind: model``) or plain dicts describing a
recommendation model by architecture family. Loading validates every field at once and reports
each problem with its dotted path and a fix (:class:`codesign.errors.SpecError`).

Families (``arch``) and their fields are documented in ``docs/model-specs.md``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from codesign.errors import SpecError
from codesign.ir.frontends.checker import MISSING, Checker, join, show
from codesign.ir.ops import ACTIVATIONS, FLOAT_DTYPES, RECURRENT_GATES

SPEC_VERSION = 1
#: Activation/weight types of the dense part; embedding tables may also be int8.
ACTIVATION_DTYPES = ("fp32", "fp16", "bf16")
ARCHS = ("dlrm", "neumf", "wide_deep", "din", "dien")
COMMON_KEYS = ("version", "kind", "name", "arch", "description", "source", "notes", "dtype")

# Sanity limits: beyond these a spec is a typo, and lowering would build absurd graphs.
MAX_ROWS = 2**40
MAX_WIDTH = 2**20
MAX_DIM = 2**16
MAX_POOLING = 2**16
MAX_TABLES = 4096
MAX_STEPS = 10_000
MAX_LAYERS = 64
MAX_TASKS = 128


@dataclass(frozen=True)
class ModelSpec:
    """A validated model spec; ``config`` holds the family's fields with defaults filled in."""

    name: str
    arch: str
    config: dict[str, Any]
    description: str = ""
    source: str = ""
    notes: str = ""
    dtype: str = "fp32"
    path: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": SPEC_VERSION,
            "kind": "model",
            "name": self.name,
            "arch": self.arch,
        }
        for key in ("description", "source", "notes"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        out["dtype"] = self.dtype
        out.update(copy.deepcopy(self.config))
        return out

    def spec_hash(self) -> str:
        """Stable hash of the model's structure (not its prose), for caches and provenance."""
        payload = json.dumps(
            {"arch": self.arch, "dtype": self.dtype, **self.config}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --- loading ------------------------------------------------------------------------------------


#: Input files (specs, presets, pipelines, run configs, plans) larger than this are refused
#: unread. The shipped ones are under 10 kB; parsing costs about 2 s and 250 MB per MB of YAML
#: (libyaml; 10 s without it), so a 1 MB cap bounds a bad file's cost where 10 MB took minutes.
MAX_INPUT_BYTES = 1000 * 1000
#: Collections nested deeper than this are refused before the document is built (the shipped
#: specs, presets and pipelines nest at most 5 levels).
MAX_YAML_DEPTH = 64
#: libyaml's safe loader where PyYAML was built with it (5x faster), else the Python one.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_input_text(path: str | Path, *, what: str = "spec", fix: str = "pass a .yaml file") -> str:
    """An input file's text: a regular file (not a directory, FIFO or device, which would block
    or never end) of at most :data:`MAX_INPUT_BYTES`, UTF-8. Anything else is one-line
    :class:`SpecError` naming the file."""
    path = Path(path)
    src = str(path) if len(str(path)) <= 240 else str(path)[:120] + "..."
    try:
        info = path.stat()
    except FileNotFoundError:
        raise _one(src, "", f"{what} file not found", "check the path") from None
    except (OSError, ValueError) as exc:
        raise _one(
            src, "", f"cannot read {what} file ({exc.__class__.__name__})", "check the path"
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise _one(src, "", f"{what} path is a directory", fix)
    if not stat.S_ISREG(info.st_mode):
        raise _one(src, "", f"{what} path is not a regular file (a FIFO, socket or device)", fix)
    if info.st_size > MAX_INPUT_BYTES:
        raise _one(
            src,
            "",
            f"{what} file is {info.st_size:,} bytes, over the {MAX_INPUT_BYTES:,}-byte limit",
            "pass a smaller file",
        )
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_INPUT_BYTES + 1)
        if len(raw) > MAX_INPUT_BYTES:
            raise _one(
                src,
                "",
                f"{what} file is over the {MAX_INPUT_BYTES:,}-byte limit",
                "pass a smaller file",
            )
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _one(
            src,
            "",
            f"cannot read {what} file ({exc.__class__.__name__}: {' '.join(str(exc).split())})",
            "check permissions and that it is UTF-8 text",
        ) from None


def _yaml_depth_over(text: str, limit: int) -> bool:
    """Whether collections nest deeper than ``limit``, from the parser's event stream (read
    iteratively, and only up to the first level too deep): libyaml's composer recurses in C
    and would overflow the stack on thousands of levels instead of raising RecursionError."""
    depth = 0
    for event in yaml.parse(text, Loader=_YAML_LOADER):
        if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            depth += 1
            if depth > limit:
                return True
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            depth -= 1
    return False


def read_yaml(path: str | Path, *, what: str = "spec") -> Any:
    """Parse a YAML file, turning I/O and syntax errors into one-line :class:`SpecError` s."""
    path = Path(path)
    src = str(path) if len(str(path)) <= 240 else str(path)[:120] + "..."
    text = read_input_text(path, what=what)
    try:
        if _yaml_depth_over(text, MAX_YAML_DEPTH):
            raise _one(
                src,
                "",
                f"YAML nesting is deeper than {MAX_YAML_DEPTH} levels",
                "flatten the document",
            )
        data = yaml.load(text, Loader=_YAML_LOADER)  # a safe loader: no arbitrary objects
    except RecursionError:
        raise _one(src, "", "YAML nesting is too deep", "flatten the document") from None
    except ValueError as exc:  # e.g. an integer literal too long for int()
        raise _one(
            src,
            "",
            f"YAML value cannot be read ({show(str(exc))})",
            "use plain numbers of sensible size",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise _one(
            src,
            "",
            f"malformed YAML{where}: {problem}",
            "fix the YAML syntax (indentation, colons, quotes)",
        ) from None
    if data is None:
        raise _one(src, "", f"{what} file is empty", "write a version: 1 / kind: model document")
    return data


def _one(source: str, path: str, message: str, fix: str) -> SpecError:
    chk = Checker(source=source)
    chk.add(path, message, fix)
    return SpecError(chk.problems, source=source)


def load_spec(source: str | Path | Mapping[str, Any], *, origin: str = "") -> ModelSpec:
    """Load and validate a model spec from a YAML path or a dict."""
    if not isinstance(source, str | Path):
        return parse_spec(source, origin=origin or "spec")
    data = read_yaml(source, what="model spec")
    return parse_spec(data, origin=origin or str(source), path=str(source))


def parse_spec(data: Any, *, origin: str = "spec", path: str | None = None) -> ModelSpec:
    chk = Checker(source=origin)
    top = chk.mapping(data, "", what="a mapping (version, kind, name, arch, ...)")
    if top is None:
        raise SpecError(chk.problems, source=origin)
    version = top.get("version", MISSING)
    if version is MISSING:
        chk.add("version", "is required", f"add 'version: {SPEC_VERSION}'")
    elif type(version) is not int or version != SPEC_VERSION:
        chk.add("version", f"unsupported version {show(version)}", f"set 'version: {SPEC_VERSION}'")
    kind = top.get("kind", MISSING)
    if kind is MISSING:
        chk.add("kind", "is required", "add 'kind: model'")
    elif kind != "model":
        chk.add("kind", f"must be 'model' for a model spec, got {show(kind)}", "set 'kind: model'")
    name = chk.text(top, "name", "")
    description = chk.text(top, "description", "", default="")
    source = chk.text(top, "source", "", default="")
    notes = chk.text(top, "notes", "", default="")
    dtype = chk.choice(top, "dtype", "", ACTIVATION_DTYPES, default="fp32")
    arch = chk.choice(top, "arch", "", ARCHS)
    config: dict[str, Any] = {}
    if arch is not None:
        schema = _SCHEMAS[arch]
        chk.no_extra(top, (*COMMON_KEYS, *schema.keys), "")
        config = schema.parse(chk, top)
    chk.raise_if_any()
    return ModelSpec(
        name=name or "model",
        arch=arch or "",
        config=config,
        description=description or "",
        source=source or "",
        notes=notes or "",
        dtype=dtype or "fp32",
        path=path,
    )


# --- shared pieces ------------------------------------------------------------------------------


def _tables(chk: Checker, raw: Any, path: str, prefix: str, *, distinct: bool = True) -> list:
    """Table groups -> a flat list of {name, rows, pooling}.

    A group is ``{rows: N, count: K, pooling: P}`` (K tables of N rows) or ``{rows: [N1, N2, ...],
    pooling: P}`` (one table per entry); ``name`` optionally prefixes the table names.
    """
    if not isinstance(raw, list) or not raw:
        chk.add(
            path,
            f"must be a non-empty list of table groups, got {show(raw)}",
            "write e.g. [{rows: 1000000, count: 8, pooling: 1}]",
        )
        return []
    tables: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        where = join(path, i)
        group = chk.mapping(item, where, what="a table group {rows, count, pooling}")
        if group is None:
            continue
        chk.no_extra(group, ("rows", "count", "pooling", "name"), where)
        pooling = chk.integer(
            group,
            "pooling",
            where,
            maximum=MAX_POOLING,
            default=1,
            fix="set lookups per item (pooling factor) >= 1",
        )
        label = chk.text(group, "name", where, default="") or f"{prefix}{i}"
        rows_raw = group.get("rows")
        if isinstance(rows_raw, list):
            if "count" in group:
                chk.add(
                    join(where, "count"),
                    "cannot be combined with a list of rows",
                    "drop count: the list gives one table per entry",
                )
            rows_list = chk.int_list(
                group,
                "rows",
                where,
                maximum=MAX_ROWS,
                max_len=MAX_TABLES,
                fix="list each table's row count (cardinality)",
            )
            if rows_list is None:
                continue
            names = [f"{label}_{j}" for j in range(len(rows_list))]
        else:
            rows = chk.integer(
                group,
                "rows",
                where,
                maximum=MAX_ROWS,
                fix="set the table's row count (cardinality) >= 1",
            )
            count = chk.integer(
                group,
                "count",
                where,
                maximum=MAX_TABLES,
                default=1,
                fix="set how many tables of this size, >= 1",
            )
            if rows is None or count is None:
                continue
            rows_list = [rows] * count
            names = [label] if count == 1 else [f"{label}_{j}" for j in range(count)]
        if pooling is None:
            continue
        for j, (tname, rows) in enumerate(zip(names, rows_list, strict=True)):
            if distinct and pooling > rows:
                chk.add(
                    join(where, "pooling"),
                    f"{pooling} lookups per item exceed the {rows} rows of table {j}: "
                    "a pooled bag holds distinct ids",
                    f"set pooling <= {rows} or raise rows",
                )
                break
            tables.append({"name": tname, "rows": rows, "pooling": pooling})
    if len(tables) > MAX_TABLES:
        chk.add(
            path, f"declares {len(tables)} tables, above the limit {MAX_TABLES}", "merge tables"
        )
        return []
    return tables


def _embedding(chk: Checker, top: dict, *, key: str = "embedding", need_tables: bool = True):
    raw = chk.require(top, key, "", "add an embedding: {dim: ..., tables: [...]} block")
    if raw is MISSING:
        return None
    emb = chk.mapping(raw, key, what="a mapping {dim, tables}")
    if emb is None:
        return None
    allowed = ("dim", "dtype", "tables") if need_tables else ("dim", "dtype")
    chk.no_extra(emb, allowed, key)
    out = {
        "dim": chk.integer(
            emb, "dim", key, maximum=MAX_DIM, fix="set the embedding dimension >= 1"
        ),
        "dtype": chk.choice(emb, "dtype", key, FLOAT_DTYPES, default="fp32"),
    }
    if need_tables:
        raw_tables = chk.require(emb, "tables", key, "list the embedding tables")
        out["tables"] = (
            [] if raw_tables is MISSING else _tables(chk, raw_tables, join(key, "tables"), "t")
        )
    return out


def _mlp(chk: Checker, top: dict, key: str, *, allow_empty: bool = False, default: Any = MISSING):
    return chk.int_list(
        top,
        key,
        "",
        allow_empty=allow_empty,
        maximum=MAX_WIDTH,
        max_len=MAX_LAYERS,
        default=default,
    )


class _Schema:
    keys: tuple[str, ...] = ()

    def parse(self, chk: Checker, top: dict) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


# --- families -----------------------------------------------------------------------------------


class _DLRM(_Schema):
    """DLRM: bottom MLP over dense features, pooled embeddings, interaction, top MLP."""

    keys = (
        "dense_features",
        "embedding",
        "bottom_mlp",
        "top_mlp",
        "interaction",
        "self_interaction",
        "output_activation",
    )

    def parse(self, chk, top):
        cfg = {
            "dense_features": chk.integer(
                top,
                "dense_features",
                "",
                maximum=MAX_WIDTH,
                fix="set the number of dense input features",
            ),
            "embedding": _embedding(chk, top),
            "bottom_mlp": _mlp(chk, top, "bottom_mlp"),
            "top_mlp": _mlp(chk, top, "top_mlp"),
            "interaction": chk.choice(top, "interaction", "", ("dot", "cat"), default="dot"),
            "self_interaction": chk.boolean(top, "self_interaction", "", default=False),
            "output_activation": chk.choice(
                top, "output_activation", "", ACTIVATIONS, default="sigmoid"
            ),
        }
        emb, bottom = cfg["embedding"], cfg["bottom_mlp"]
        if (
            emb
            and bottom
            and emb["dim"]
            and cfg["interaction"] == "dot"
            and bottom[-1] != emb["dim"]
        ):
            chk.add(
                "bottom_mlp",
                f"ends in {bottom[-1]} but the dot interaction needs the "
                f"embedding dim {emb['dim']}",
                f"make the last bottom_mlp width {emb['dim']}",
            )
        if cfg["self_interaction"] and cfg["interaction"] == "cat":
            chk.add(
                "self_interaction",
                "only applies to the dot interaction",
                "drop it or set interaction: dot",
            )
        return cfg


class _NeuMF(_Schema):
    """NeuMF / NCF: a GMF branch (user x item) and an MLP tower over concat(user, item)
    embeddings, concatenated into the final layer(s)."""

    keys = (
        "users",
        "items",
        "mf_dim",
        "mlp_layers",
        "mlp_embedding_dim",
        "gmf",
        "final",
        "output_activation",
    )

    def parse(self, chk, top):
        cfg = {
            "users": chk.integer(top, "users", "", maximum=MAX_ROWS, fix="set the number of users"),
            "items": chk.integer(top, "items", "", maximum=MAX_ROWS, fix="set the number of items"),
            "mf_dim": chk.integer(
                top,
                "mf_dim",
                "",
                minimum=0,
                maximum=MAX_DIM,
                fix="set the GMF embedding dim (0 disables GMF)",
            ),
            "mlp_layers": _mlp(chk, top, "mlp_layers"),
            "gmf": chk.choice(top, "gmf", "", ("mul", "add"), default="mul"),
            "final": _mlp(chk, top, "final", default=[1]),
            "output_activation": chk.choice(
                top, "output_activation", "", ACTIVATIONS, default="sigmoid"
            ),
        }
        layers = cfg["mlp_layers"]
        if layers:
            if layers[0] % 2:
                chk.add(
                    "mlp_layers[0]",
                    f"is {layers[0]}, but the MLP input is concat(user, item) "
                    "embeddings of equal width",
                    "make the first width even",
                )
            default_dim = max(layers[0] // 2, 1)
            dim = chk.integer(top, "mlp_embedding_dim", "", maximum=MAX_DIM, default=default_dim)
            if dim is not None and 2 * dim != layers[0]:
                chk.add(
                    "mlp_embedding_dim",
                    f"{dim} makes a {2 * dim}-wide MLP input, but mlp_layers starts at {layers[0]}",
                    f"set mlp_embedding_dim: {layers[0] // 2} or mlp_layers[0]: {2 * dim}",
                )
            cfg["mlp_embedding_dim"] = dim
        return cfg


class _WideDeep(_Schema):
    """Wide & Deep as in DeepRecInfra (and MT-WnD): concat(dense, embeddings) -> shared MLP ->
    one head per task."""

    keys = ("dense_features", "embedding", "deep_mlp", "tasks", "task_mlp", "output_activation")

    def parse(self, chk, top):
        cfg = {
            "dense_features": chk.integer(
                top,
                "dense_features",
                "",
                minimum=0,
                maximum=MAX_WIDTH,
                fix="set the number of dense input features",
            ),
            "embedding": _embedding(chk, top),
            "deep_mlp": _mlp(chk, top, "deep_mlp"),
            "tasks": chk.integer(top, "tasks", "", maximum=MAX_TASKS, default=1),
            "task_mlp": _mlp(chk, top, "task_mlp", allow_empty=True, default=[]),
            "output_activation": chk.choice(
                top, "output_activation", "", ACTIVATIONS, default="sigmoid"
            ),
        }
        if cfg["tasks"] and cfg["tasks"] > 1 and not cfg["task_mlp"]:
            chk.add(
                "task_mlp",
                f"is empty but tasks is {cfg['tasks']}",
                "list the per-task head widths, e.g. [256, 128]",
            )
        return cfg


class _Behaviour(_Schema):
    """DIN and DIEN: tables by role; the behaviour tables' lookups form the user's history."""

    roles = ("user_tables", "behaviour_tables", "ad_tables", "context_tables")
    keys = ("embedding", *roles, "top_mlp", "output_activation")

    def parse(self, chk, top):
        cfg: dict[str, Any] = {"embedding": _embedding(chk, top, need_tables=False)}
        for key in self.roles:
            raw = top.get(key)
            if raw is None:
                if key in ("behaviour_tables", "ad_tables"):
                    what = (
                        "user-behaviour (history)" if key == "behaviour_tables" else "candidate-ad"
                    )
                    chk.add(key, "is required", f"list the {what} tables")
                cfg[key] = []
            else:
                # history lookups are a sequence: repeated ids are fine, so no pooling<=rows check
                cfg[key] = _tables(
                    chk, raw, key, key.split("_")[0], distinct=key != "behaviour_tables"
                )
        steps = sum(t["pooling"] for t in cfg["behaviour_tables"])
        if steps > MAX_STEPS:
            chk.add(
                "behaviour_tables",
                f"make a history of {steps} steps, above the limit {MAX_STEPS}",
                "use fewer behaviour tables or lookups",
            )
        cfg["top_mlp"] = _mlp(chk, top, "top_mlp")
        cfg["output_activation"] = chk.choice(
            top, "output_activation", "", ACTIVATIONS, default="softmax"
        )
        return cfg


class _DIN(_Behaviour):
    """DIN: an attention unit pools the history against the candidate ad."""

    keys = (*_Behaviour.keys, "attention_mlp", "attention_features")

    def parse(self, chk, top):
        cfg = super().parse(chk, top)
        cfg["attention_mlp"] = _mlp(chk, top, "attention_mlp", allow_empty=True, default=[])
        cfg["attention_features"] = chk.choice(
            top, "attention_features", "", ("kq_prod", "kq_diff_prod"), default="kq_prod"
        )
        return cfg


class _DIEN(_Behaviour):
    """DIEN: a recurrent interest extractor over the history, then a top MLP."""

    keys = (*_Behaviour.keys, "sequence")

    def parse(self, chk, top):
        cfg = super().parse(chk, top)
        raw = chk.require(top, "sequence", "", "add sequence: {cell, hidden, layers}")
        seq = None if raw is MISSING else chk.mapping(raw, "sequence")
        if seq is not None:
            chk.no_extra(seq, ("cell", "hidden", "layers"), "sequence")
            cfg["sequence"] = {
                "cell": chk.choice(seq, "cell", "sequence", tuple(RECURRENT_GATES), default="gru"),
                "hidden": chk.integer(
                    seq, "hidden", "sequence", maximum=MAX_WIDTH, fix="set the hidden size"
                ),
                "layers": chk.integer(seq, "layers", "sequence", maximum=MAX_LAYERS, default=1),
            }
        return cfg


_SCHEMAS: dict[str, _Schema] = {
    "dlrm": _DLRM(),
    "neumf": _NeuMF(),
    "wide_deep": _WideDeep(),
    "din": _DIN(),
    "dien": _DIEN(),
}
