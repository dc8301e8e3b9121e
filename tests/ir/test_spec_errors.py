"""Malformed model specs: every user mistake ends in one one-line ``SpecError`` (or another
``CodesignError``) that names the field path and the fix, never in a traceback.

Covers the issue's acceptance: a table of malformed specs over all five families, every problem
reported at once, YAML file errors, unknown zoo names, bad batches, and hypothesis fuzzing of
whole spec dictionaries and of mutations of valid specs.

Tests marked ``# Regression`` pin bugs the fuzz found (huge integers, odd keys, deep nesting,
unbounded messages, long paths, unbounded histories); each comment says what used to happen.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import codesign.ir.frontends.zoo as zoo_module
from codesign.errors import CodesignError, SpecError, UnknownNameError
from codesign.ir.frontends.lower import lower
from codesign.ir.frontends.spec import ModelSpec, load_spec, parse_spec
from codesign.ir.frontends.zoo import resolve
from codesign.testing.target_contract import TINY_DLRM  # deep-copied below

ZOO_DIR = Path(zoo_module.__file__).parent / "zoo"
FAMILIES = ("dlrm", "neumf", "wide_deep", "din", "dien")


# --- valid seeds, one per family (zoo specs shrunk so lowering stays instant) -------------------


def _zoo(filename: str) -> dict[str, Any]:
    return yaml.safe_load((ZOO_DIR / filename).read_text(encoding="utf-8"))


def _shrink_tables(groups: list[dict[str, Any]], *, rows: int = 50, count: int = 2) -> list:
    out = []
    for group in groups:
        group = dict(group)
        group["rows"] = rows
        if "count" in group:
            group["count"] = min(group["count"], count)
        out.append(group)
    return out


def _seed_neumf() -> dict[str, Any]:
    spec = _zoo("deeprecinfra__ncf.yaml")
    spec.update(users=60, items=30, mf_dim=8, mlp_embedding_dim=8, mlp_layers=[16, 8], final=[4])
    return spec


def _seed_wide_deep() -> dict[str, Any]:
    spec = _zoo("deeprecinfra__mt-wnd.yaml")
    spec["dense_features"] = 8
    spec["embedding"] = {"dim": 4, "tables": _shrink_tables(spec["embedding"]["tables"])}
    spec.update(deep_mlp=[16, 8], task_mlp=[4, 2], tasks=2)
    return spec


def _seed_behaviour(filename: str) -> dict[str, Any]:
    spec = _zoo(filename)
    spec["embedding"] = {"dim": 4}
    for role in ("user_tables", "behaviour_tables", "ad_tables", "context_tables"):
        spec[role] = _shrink_tables(spec[role], count=3)
    spec["top_mlp"] = [8, 2]
    return spec


def _seed_dien() -> dict[str, Any]:
    spec = _seed_behaviour("deeprecinfra__dien.yaml")
    spec["sequence"] = {"cell": "gru", "hidden": 8, "layers": 2}
    return spec


SEEDS: dict[str, dict[str, Any]] = {
    "dlrm": copy.deepcopy(TINY_DLRM),
    "neumf": _seed_neumf(),
    "wide_deep": _seed_wide_deep(),
    "din": _seed_behaviour("deeprecinfra__din.yaml"),
    "dien": _seed_dien(),
}


def seed(family: str) -> dict[str, Any]:
    return copy.deepcopy(SEEDS[family])


@pytest.mark.parametrize("family", FAMILIES)
def test_seeds_are_valid_and_lower(family):
    spec = load_spec(seed(family))
    assert spec.arch == family
    lower(spec, batch=4).lint()


# --- helpers ------------------------------------------------------------------------------------

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _steps(path: str) -> list[str | int]:
    return [name if name else int(index) for name, index in _TOKEN.findall(path)]


def _parent(doc: Any, path: str) -> tuple[Any, str | int]:
    steps = _steps(path)
    for step in steps[:-1]:
        doc = doc[step]
    return doc, steps[-1]


def put(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation setting ``path`` (dotted, with [i]) to ``value``."""

    def mutate(doc: dict) -> None:
        parent, key = _parent(doc, path)
        parent[key] = copy.deepcopy(value)

    return mutate


def drop(path: str) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        parent, key = _parent(doc, path)
        del parent[key]

    return mutate


def rename(path: str, new_key: str) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        parent, key = _parent(doc, path)
        parent[new_key] = parent.pop(key)

    return mutate


def both(*mutations: Callable[[dict], None]) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        for m in mutations:
            m(doc)

    return mutate


def assert_one_line(err: BaseException) -> str:
    text = str(err)
    assert text.strip(), "empty error message"
    assert "\n" not in text and "\r" not in text, f"multi-line message: {text!r}"
    return text


def assert_spec_error(err: SpecError) -> str:
    """One line, at least one problem, every problem with a path and a fix."""
    text = assert_one_line(err)
    assert err.problems, "SpecError without problems"
    assert "fix:" in text
    for problem in err.problems:
        assert problem.path, f"problem without a field path: {problem}"
        assert problem.fix, f"problem without a fix: {problem}"
    return text


# --- 1. a table of malformed specs --------------------------------------------------------------
# (id, family, mutation, exact field path that must be reported, optional extra text)

# fmt: off
CASES: list[tuple[str, str, Callable[[dict], None], str, str]] = [
    # header fields
    ("missing-version", "dlrm", drop("version"), "version", "version: 1"),
    ("wrong-version", "dlrm", put("version", 2), "version", "version: 1"),
    ("version-as-text", "neumf", put("version", "1"), "version", ""),
    ("version-as-bool", "din", put("version", True), "version", ""),
    ("missing-kind", "dlrm", drop("kind"), "kind", "kind: model"),
    ("kind-not-model", "wide_deep", put("kind", "target"), "kind", "kind: model"),
    ("missing-name", "dlrm", drop("name"), "name", ""),
    ("blank-name", "dien", put("name", "   "), "name", ""),
    ("name-as-list", "neumf", put("name", ["x"]), "name", ""),
    ("description-as-int", "dlrm", put("description", 5), "description", ""),
    ("missing-arch", "dlrm", drop("arch"), "arch", "dlrm"),
    ("unknown-arch", "dlrm", put("arch", "dlrn"), "arch", "did you mean 'dlrm'"),
    ("arch-as-mapping", "din", put("arch", {"name": "din"}), "arch", ""),
    ("bad-dtype", "dlrm", put("dtype", "fp64"), "dtype", "fp32"),
    ("int8-activations", "wide_deep", put("dtype", "int8"), "dtype", ""),
    # unknown fields
    ("typo-bottom-mlp", "dlrm", rename("bottom_mlp", "botom_mlp"), "botom_mlp",
     "did you mean 'bottom_mlp'"),
    ("foreign-field", "neumf", put("embedding", {"dim": 4}), "embedding", "unknown field"),
    ("table-typo", "dlrm", rename("embedding.tables[0].pooling", "pool"),
     "embedding.tables[0].pool", "did you mean 'pooling'"),
    ("embedding-typo", "dlrm", rename("embedding.dim", "dims"), "embedding.dims",
     "did you mean 'dim'"),
    ("din-embedding-has-tables", "din", put("embedding.tables", [{"rows": 5}]),
     "embedding.tables", "unknown field"),
    ("dien-sequence-typo", "dien", rename("sequence.hidden", "hiden"), "sequence.hiden",
     "did you mean 'hidden'"),
    # wrong types
    ("dense-as-text", "dlrm", put("dense_features", "8"), "dense_features", ""),
    ("dense-as-float", "dlrm", put("dense_features", 64.5), "dense_features", ""),
    ("dense-as-whole-float", "dlrm", put("dense_features", 8.0), "dense_features", "write 8"),
    ("dense-as-bool", "dlrm", put("dense_features", True), "dense_features", ""),
    ("embedding-as-list", "dlrm", put("embedding", [4]), "embedding", "mapping"),
    ("tables-as-mapping", "dlrm", put("embedding.tables", {"rows": 10}), "embedding.tables",
     ""),
    ("table-entry-scalar", "dlrm", put("embedding.tables[0]", 5), "embedding.tables[0]", ""),
    ("table-entry-list", "wide_deep", put("embedding.tables[1]", [500, 2]),
     "embedding.tables[1]", ""),
    ("rows-as-text", "wide_deep", put("embedding.tables[0].rows", "many"),
     "embedding.tables[0].rows", ""),
    ("rows-list-entry-float", "dlrm", put("embedding.tables[0].rows", [10, 2.5]),
     "embedding.tables[0].rows[1]", ""),
    ("pooling-as-float", "dlrm", put("embedding.tables[1].pooling", 2.0),
     "embedding.tables[1].pooling", "write 2"),
    ("mlp-as-mapping", "dlrm", put("top_mlp", {"a": 1}), "top_mlp", ""),
    ("mlp-width-float", "dlrm", put("top_mlp", [8.5, 1]), "top_mlp[0]", ""),
    ("mlp-width-bool", "wide_deep", put("deep_mlp", [True, 8]), "deep_mlp[0]", ""),
    ("mlp-bad-string", "neumf", put("mlp_layers", "16-x"), "mlp_layers", ""),
    ("self-interaction-text", "dlrm", put("self_interaction", "yes"), "self_interaction",
     "true or false"),
    ("sequence-as-list", "dien", put("sequence", [64]), "sequence", ""),
    ("context-as-scalar", "din", put("context_tables", 5), "context_tables", ""),
    ("table-name-as-int", "dlrm", put("embedding.tables[0].name", 3),
     "embedding.tables[0].name", ""),
    # zero, negative and huge sizes
    ("dense-zero", "dlrm", put("dense_features", 0), "dense_features", "positive"),
    ("dense-negative", "dlrm", put("dense_features", -3), "dense_features", ""),
    ("dense-huge", "dlrm", put("dense_features", 2**21), "dense_features", "above the limit"),
    ("wd-dense-negative", "wide_deep", put("dense_features", -1), "dense_features", ""),
    ("dim-zero", "dlrm", put("embedding.dim", 0), "embedding.dim", ""),
    ("dim-negative", "din", put("embedding.dim", -4), "embedding.dim", ""),
    ("dim-huge", "wide_deep", put("embedding.dim", 2**17), "embedding.dim", "above the limit"),
    ("rows-zero", "dlrm", put("embedding.tables[1].rows", 0), "embedding.tables[1].rows", ""),
    ("rows-negative-in-list", "dlrm", put("embedding.tables[0].rows", [10, -20, 1000]),
     "embedding.tables[0].rows[1]", ""),
    ("rows-huge", "dlrm", put("embedding.tables[1].rows", 2**41), "embedding.tables[1].rows",
     "above the limit"),
    ("count-zero", "dlrm", put("embedding.tables[1].count", 0), "embedding.tables[1].count", ""),
    ("count-huge", "wide_deep", put("embedding.tables[0].count", 5000),
     "embedding.tables[0].count", "above the limit"),
    ("pooling-zero", "dlrm", put("embedding.tables[1].pooling", 0),
     "embedding.tables[1].pooling", ""),
    ("pooling-negative", "din", put("ad_tables[0].pooling", -2), "ad_tables[0].pooling", ""),
    ("pooling-huge", "dien", put("behaviour_tables[0].pooling", 2**17),
     "behaviour_tables[0].pooling", "above the limit"),
    ("mlp-zero-width", "dlrm", put("top_mlp", [8, 0]), "top_mlp[1]", ""),
    ("mlp-negative-width", "dlrm", put("bottom_mlp", [-16, 4]), "bottom_mlp[0]", ""),
    ("mlp-huge-width", "din", put("top_mlp", [2**21, 2]), "top_mlp[0]", "above the limit"),
    ("mlp-too-deep", "dlrm", put("top_mlp", [4] * 65), "top_mlp", "above the limit"),
    ("neumf-users-zero", "neumf", put("users", 0), "users", ""),
    ("neumf-items-missing", "neumf", drop("items"), "items", ""),
    ("neumf-mf-dim-negative", "neumf", put("mf_dim", -1), "mf_dim", ""),
    ("wd-tasks-zero", "wide_deep", put("tasks", 0), "tasks", ""),
    ("wd-tasks-huge", "wide_deep", put("tasks", 2000), "tasks", "above the limit"),
    ("dien-hidden-zero", "dien", put("sequence.hidden", 0), "sequence.hidden", ""),
    ("dien-hidden-negative", "dien", put("sequence.hidden", -64), "sequence.hidden", ""),
    ("dien-layers-huge", "dien", put("sequence.layers", 65), "sequence.layers",
     "above the limit"),
    # empty lists
    ("tables-empty", "dlrm", put("embedding.tables", []), "embedding.tables", ""),
    ("bottom-mlp-empty", "dlrm", put("bottom_mlp", []), "bottom_mlp", ""),
    ("top-mlp-empty", "din", put("top_mlp", []), "top_mlp", ""),
    ("neumf-final-empty", "neumf", put("final", []), "final", ""),
    ("ad-tables-empty", "din", put("ad_tables", []), "ad_tables", ""),
    # pooling larger than rows where a bag holds distinct ids
    ("pooling-over-rows", "dlrm", put("embedding.tables[1].pooling", 501),
     "embedding.tables[1].pooling", "pooling <= 500"),
    ("pooling-over-rows-list", "dlrm", put("embedding.tables[0].pooling", 15),
     "embedding.tables[0].pooling", "pooling <= 10"),
    ("wd-pooling-over-rows", "wide_deep", put("embedding.tables[1].pooling", 51),
     "embedding.tables[1].pooling", ""),
    ("din-user-pooling-over-rows", "din", put("user_tables[0].pooling", 51),
     "user_tables[0].pooling", ""),
    ("dien-ad-pooling-over-rows", "dien", put("ad_tables[0].pooling", 51),
     "ad_tables[0].pooling", ""),
    # cross-field consistency
    ("rows-list-with-count", "dlrm", put("embedding.tables[0].count", 2),
     "embedding.tables[0].count", "drop count"),
    ("dot-bottom-mismatch", "dlrm", put("bottom_mlp", [16, 8]), "bottom_mlp", "embedding dim 4"),
    ("self-interaction-with-cat", "dlrm",
     both(put("interaction", "cat"), put("self_interaction", True)), "self_interaction", ""),
    ("neumf-embedding-dim-mismatch", "neumf", put("mlp_embedding_dim", 5), "mlp_embedding_dim",
     "mlp_embedding_dim: 8"),
    ("neumf-odd-first-layer", "neumf",
     both(put("mlp_layers", [15, 8]), drop("mlp_embedding_dim")), "mlp_layers[0]", "even"),
    ("wd-tasks-without-heads", "wide_deep", put("task_mlp", []), "task_mlp", ""),
    # invalid choices
    ("bad-interaction", "dlrm", put("interaction", "dott"), "interaction", "did you mean 'dot'"),
    ("bad-activation", "dlrm", put("output_activation", "gelu"), "output_activation", "relu"),
    ("bad-embedding-dtype", "wide_deep", put("embedding.dtype", "fp64"), "embedding.dtype", ""),
    ("neumf-bad-gmf", "neumf", put("gmf", "dot"), "gmf", "mul"),
    ("din-bad-attention-features", "din", put("attention_features", "kq"),
     "attention_features", ""),
    ("dien-bad-cell", "dien", put("sequence.cell", "augru"), "sequence.cell", "gru"),
    # required family blocks
    ("dlrm-missing-embedding", "dlrm", drop("embedding"), "embedding", ""),
    ("wd-missing-deep-mlp", "wide_deep", drop("deep_mlp"), "deep_mlp", ""),
    ("din-missing-behaviour", "din", drop("behaviour_tables"), "behaviour_tables", ""),
    ("din-missing-ad", "din", drop("ad_tables"), "ad_tables", ""),
    ("dien-missing-sequence", "dien", drop("sequence"), "sequence", ""),
    ("dien-missing-behaviour", "dien", drop("behaviour_tables"), "behaviour_tables", ""),
]
# fmt: on


def test_case_table_is_large_and_distinct():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)
    assert {c[1] for c in CASES} == set(FAMILIES)


@pytest.mark.parametrize(
    ("family", "mutation", "path", "extra"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_malformed_spec_names_field_and_fix(family, mutation, path, extra):
    doc = seed(family)
    mutation(doc)
    with pytest.raises(SpecError) as info:
        load_spec(doc)
    err = info.value
    text = assert_spec_error(err)
    matching = [p for p in err.problems if p.path == path]
    assert matching, f"no problem at {path!r}; got {[p.path for p in err.problems]}"
    assert f"{path}: " in text, f"message does not name {path!r}: {text}"
    if extra:
        assert any(extra in str(p) for p in matching), f"{extra!r} not in {matching}"


# --- 2. every problem is reported at once -------------------------------------------------------


def test_all_problems_reported_in_one_error():
    doc = seed("dlrm")
    doc["dense_features"] = 0
    doc["embedding"]["dim"] = -1
    doc["top_mlp"] = []
    with pytest.raises(SpecError) as info:
        load_spec(doc)
    err = info.value
    assert_spec_error(err)
    paths = {p.path for p in err.problems}
    assert {"dense_features", "embedding.dim", "top_mlp"} <= paths
    assert len(err.problems) >= 3
    assert "; also " in str(err)


def test_many_problems_are_summarised_on_one_line():
    doc = seed("dien")
    doc.update(version=3, kind="preset", top_mlp=[0], extra_a=1, extra_b=2)
    doc["sequence"]["hidden"] = -1
    doc["ad_tables"] = []
    with pytest.raises(SpecError) as info:
        load_spec(doc)
    err = info.value
    text = assert_spec_error(err)
    assert len(err.problems) >= 7
    assert f"and {len(err.problems) - 4} more" in text


# --- 3. YAML files ------------------------------------------------------------------------------

HEADER = "version: 1\nkind: model\nname: x\narch: dlrm\n"


def _load_file(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    text = assert_one_line(info.value)
    assert str(path) in text, "the message should name the file"
    assert "fix:" in text
    assert info.value.problems
    return info.value


def test_valid_yaml_file_loads(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(seed("dlrm")), encoding="utf-8")
    assert load_spec(path) == load_spec(seed("dlrm"))


def test_missing_file(tmp_path):
    assert "not found" in str(_load_file(tmp_path / "nope.yaml"))


def test_directory_instead_of_file(tmp_path):
    assert "directory" in str(_load_file(tmp_path))


@pytest.mark.parametrize(
    "content", ["", "\n\n", "# only a comment\n"], ids=["empty", "blank", "comment"]
)
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.yaml"
    path.write_text(content, encoding="utf-8")
    assert "empty" in str(_load_file(path))


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("version: 1\nkind: model\n  name: x\narch: dlrm\n", 3),  # bad indentation
        (HEADER + "top_mlp: [8, 1\n", None),  # unclosed bracket
        (HEADER + "embedding: {dim: 4\nbottom_mlp: [4]\n", None),  # unclosed brace
        ("version: 1\n\tkind: model\n", 2),  # tab indentation
        (HEADER + 'notes: "unterminated\n', None),
    ],
    ids=["indentation", "unclosed-bracket", "unclosed-brace", "tab", "unclosed-quote"],
)
def test_malformed_yaml_names_line(tmp_path, content, line):
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    text = str(_load_file(path))
    assert "malformed YAML" in text
    found = re.search(r"line (\d+)", text)
    assert found, f"no line number in {text!r}"
    if line is not None:
        assert int(found.group(1)) == line


@pytest.mark.parametrize(
    "payload",
    [HEADER.encode() + b"notes: caf\xe9\n", "version: 1\n".encode("utf-16")],
    ids=["latin-1", "utf-16"],
)
def test_non_utf8_file(tmp_path, payload):
    path = tmp_path / "binary.yaml"
    path.write_bytes(payload)
    assert "UTF-8" in str(_load_file(path))


@pytest.mark.parametrize(
    ("content", "what"),
    [("- 1\n- 2\n", "a list"), ("just text\n", "text"), ("42\n", "int")],
    ids=["list", "text", "number"],
)
def test_top_level_not_a_mapping(tmp_path, content, what):
    path = tmp_path / "list.yaml"
    path.write_text(content, encoding="utf-8")
    text = str(_load_file(path))
    assert "(top level)" in text and what in text


def test_python_tags_are_refused(tmp_path):
    path = tmp_path / "tag.yaml"
    path.write_text(HEADER + "notes: !!python/object/apply:os.getcwd []\n", encoding="utf-8")
    _load_file(path)


def test_yaml_type_mistakes_are_field_errors(tmp_path):
    path = tmp_path / "types.yaml"
    path.write_text(
        "version: 1\nkind: model\nname: 2020-01-01\narch: dlrm\ndense_features: 8\n"
        "embedding: {dim: 4, tables: [{rows: 1e3}]}\nbottom_mlp: 16-4\ntop_mlp: [8, 1]\n",
        encoding="utf-8",
    )
    err = _load_file(path)
    assert {p.path for p in err.problems} == {"name", "embedding.tables[0].rows"}


# Regression: a 5000-digit integer literal makes PyYAML's int() raise ValueError (Python's
# 4300-digit
# int/str limit) inside yaml.safe_load, which read_yaml does not catch.
def test_yaml_huge_integer_literal(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(HEADER + "dense_features: " + "9" * 5000 + "\n", encoding="utf-8")
    _load_file(path)


# Regression: deeply nested flow collections make PyYAML's recursive composer raise RecursionError,
# which read_yaml does not catch.
def test_yaml_deep_nesting(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(HEADER + "top_mlp: " + "[" * 2000 + "]" * 2000 + "\n", encoding="utf-8")
    _load_file(path)


# --- 4. unknown zoo names -----------------------------------------------------------------------


def test_unknown_zoo_name_suggests_close_match():
    with pytest.raises(UnknownNameError) as info:
        resolve("rmc1")
    text = assert_one_line(info.value)
    assert "dlrm-rmc1" in text
    assert "codesign models list" in text


def test_unknown_zoo_name_without_close_match():
    with pytest.raises(UnknownNameError) as info:
        lower("zzzzzzzz", batch=4)
    text = assert_one_line(info.value)
    assert "codesign models list" in text


def test_missing_yaml_path_via_resolve(tmp_path):
    with pytest.raises(SpecError) as info:
        resolve(str(tmp_path / "missing.yaml"))
    assert "not found" in assert_one_line(info.value)


# --- 5. bad batches -----------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [0, -1, "8", True, 2.0, None, 2**40], ids=repr)
def test_lower_rejects_bad_batch(batch):
    spec = load_spec(seed("dlrm"))
    with pytest.raises(SpecError) as info:
        lower(spec, batch=batch)
    err = info.value
    text = assert_spec_error(err)
    assert [p.path for p in err.problems] == ["batch"]
    assert "batch: " in text


def test_lower_of_malformed_dict_is_a_spec_error():
    doc = seed("neumf")
    doc["users"] = -5
    with pytest.raises(SpecError) as info:
        lower(doc, batch=4)
    assert "users: " in assert_spec_error(info.value)


# --- known edge cases found while fuzzing (see the report) --------------------------------------


# Regression: the '64-32' string form of a layer list uses str.isdigit(), which accepts '²' (and
# other
# Unicode digits int() rejects), so int('²') raises ValueError instead of a SpecError.
def test_layer_string_with_unicode_digit():
    doc = seed("dlrm")
    doc["bottom_mlp"] = "16-²"
    with pytest.raises(SpecError) as info:
        load_spec(doc)
    assert "bottom_mlp" in assert_spec_error(info.value)


# Regression: integers beyond 4300 digits cannot be formatted into the message (ValueError from
# Python's int/str limit) -- both as ints and in the '64-32' string form.
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dense_features", 10**5000),
        ("dense_features", -(10**5000)),
        ("top_mlp", [10**5000, 1]),
        ("top_mlp", "9" * 5000),
    ],
    ids=["huge-int", "huge-negative-int", "huge-int-in-list", "huge-layer-string"],
)
def test_absurdly_large_integers(field, value):
    doc = seed("dlrm")
    doc[field] = value
    with pytest.raises(SpecError) as info:
        load_spec(doc)
    assert field in assert_spec_error(info.value)


# Regression: unknown field names are echoed raw: a newline or carriage return in a key splits the
# message over two lines, and an empty key gives a problem with an empty path ("spec: unknown
# field"), which names no field.
@pytest.mark.parametrize("key", ["bad\nkey", "\r", ""], ids=["newline", "carriage-return", "empty"])
@pytest.mark.parametrize("where", ["top", "table"])
def test_odd_unknown_keys_are_named_on_one_line(key, where):
    doc = seed("dlrm")
    (doc if where == "top" else doc["embedding"]["tables"][0])[key] = 1
    with pytest.raises(SpecError) as info:
        load_spec(doc)
    assert_spec_error(info.value)


# Regression (message quality): a mapping with a non-text key is reported as "must be a mapping ...,
# got a mapping (fix: write key: value pairs)", which neither names the offending key nor says
# what to change.
def test_non_text_key_is_named():
    doc = seed("dlrm")
    doc["embedding"][2] = 3
    with pytest.raises(SpecError) as info:
        load_spec(doc)
    text = assert_spec_error(info.value)
    assert "embedding" in text
    assert "got a mapping" not in text, text


# Regression: values are echoed with an unbounded repr(); a big wrong value makes a megabyte "line".
def test_message_stays_short_for_big_values():
    doc = seed("dlrm")
    doc["dense_features"] = list(range(100_000))
    with pytest.raises(SpecError) as info:
        load_spec(doc)
    text = assert_spec_error(info.value)
    assert len(text) < 2_000, f"message is {len(text)} characters long"


# Regression: load_spec() of a parsed document that is not a mapping (a list, a number, None)
# treats it
# as a path and raises TypeError; parse_spec() already reports '(top level): must be a mapping'.
@pytest.mark.parametrize("doc", [[1, 2], 5, None, 1.5], ids=repr)
def test_load_spec_of_non_mapping_document(doc):
    with pytest.raises(SpecError) as info:
        load_spec(doc)
    assert "(top level)" in assert_spec_error(info.value)


@pytest.mark.parametrize("doc", [[1, 2], 5, None, 1.5, "text", True], ids=repr)
def test_parse_spec_of_non_mapping_document(doc):
    with pytest.raises(SpecError) as info:
        parse_spec(doc)
    assert "(top level)" in assert_spec_error(info.value)


# Regression: a very long string is taken as a path and Path.exists() raises OSError (ENAMETOOLONG).
def test_load_spec_of_overlong_path():
    with pytest.raises(SpecError) as info:
        load_spec("x" * 300 + ".yaml")
    assert_one_line(info.value)


# Regression: MAX_STEPS (spec.py) is never used, so DIEN/DIN histories of any length validate: here
# 4096 behaviour tables x 65536 lookups = 268 million recurrent steps.
def test_history_length_is_limited():
    doc = seed("dien")
    doc["behaviour_tables"] = [{"rows": 2, "count": 4096, "pooling": 2**16}]
    with pytest.raises(SpecError) as info:
        load_spec(doc)
    assert "behaviour_tables" in assert_spec_error(info.value)


# --- edge values that are valid -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "mutation"),
    [
        # history lookups are a sequence: repeated ids are fine, so pooling may exceed rows
        pytest.param("din", put("behaviour_tables[0].pooling", 120), id="din-long-history"),
        pytest.param("dien", put("behaviour_tables[0].pooling", 120), id="dien-long-history"),
        pytest.param("neumf", put("mf_dim", 0), id="neumf-no-gmf"),
        pytest.param("wide_deep", put("dense_features", 0), id="wd-no-dense"),
        pytest.param("dlrm", put("bottom_mlp", "16-4"), id="mlp-as-dashed-string"),
        pytest.param(
            "dlrm", both(put("interaction", "cat"), put("bottom_mlp", [16, 8])), id="cat-any-width"
        ),
        pytest.param("dlrm", put("embedding.tables[0].pooling", 10), id="pooling-equals-rows"),
        pytest.param("wide_deep", both(put("tasks", 1), put("task_mlp", [])), id="wd-one-task"),
    ],
)
def test_edge_values_that_are_valid_lower(family, mutation):
    doc = seed(family)
    mutation(doc)
    lower(load_spec(doc), batch=3).lint()


# --- 6. fuzzing -------------------------------------------------------------------------------

FIELD_NAMES = sorted(
    {key for family in FAMILIES for key in SEEDS[family]}
    | set(
        "dtype interaction self_interaction output_activation count pooling rows dim tables "
        "mlp_embedding_dim gmf attention_mlp attention_features cell hidden layers user_tables "
        "context_tables".split()
    )
)
CHOICE_WORDS = [
    *"dlrm neumf wide_deep din dien model dot cat fp32 fp16 bf16 int8 relu sigmoid softmax".split(),
    *"none gru lstm rnn mul add kq_prod kq_diff_prod 64-32 8-0 1".split(),
    "",
    " ",
]
INTS = st.one_of(
    st.integers(-3, 70),
    st.sampled_from([0, -1, 2**16, 2**16 + 1, 2**20, 2**20 + 1, 2**40, 2**41, 2**63, -(2**63)]),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(CHOICE_WORDS),
    st.text(max_size=8),
)
KEYS = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_never_a_traceback(doc: Any, batch: int) -> None:
    """Either a spec that lowers to a sound graph, or one one-line CodesignError."""
    try:
        spec = load_spec(doc)
    except SpecError as err:
        assert_spec_error(err)
        return
    except CodesignError as err:
        assert_one_line(err)
        return
    assert isinstance(spec, ModelSpec)
    graph = lower(spec, batch=batch)  # a validated spec must lower: any exception is a bug
    graph.lint()


@FUZZ
@given(doc=st.dictionaries(KEYS, VALUES, max_size=12), batch=st.integers(1, 64))
def test_fuzz_arbitrary_dicts(doc, batch):
    check_never_a_traceback(doc, batch)


@FUZZ
@given(
    header=st.fixed_dictionaries(
        {"version": st.just(1), "kind": st.just("model"), "name": st.just("fuzz")},
        optional={"arch": st.sampled_from(FAMILIES)},
    ),
    body=st.dictionaries(st.sampled_from(FIELD_NAMES), VALUES, max_size=10),
    batch=st.integers(1, 64),
)
def test_fuzz_family_fields_with_random_values(header, body, batch):
    check_never_a_traceback({**body, **header}, batch)


@FUZZ
@given(doc=VALUES)
def test_fuzz_arbitrary_documents_with_parse_spec(doc):
    try:
        parse_spec(doc)
    except SpecError as err:
        assert_spec_error(err)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every (nested) key/index path in ``node``."""
    out: list[tuple] = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        out.append((*prefix, key))
        if isinstance(value, dict | list) and value:
            out.extend(_paths(value, (*prefix, key)))
    return out


def _container(doc: Any, path: tuple) -> Any:
    for step in path:
        doc = doc[step]
    return doc


@FUZZ
@given(family=st.sampled_from(FAMILIES), data=st.data(), batch=st.integers(1, 64))
def test_fuzz_mutations_of_valid_specs(family, data, batch):
    doc = seed(family)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = _paths(doc)
        edit = data.draw(st.sampled_from(["nudge", "replace", "delete", "add"]), label="edit")
        numbers = [p for p in paths if type(_container(doc, p)) is int]
        if edit == "nudge" and numbers:  # another integer: more specs validate and get lowered
            path = data.draw(st.sampled_from(numbers), label="path")
            _container(doc, path[:-1])[path[-1]] = data.draw(INTS, label="number")
            continue
        if edit == "add" or not paths:
            dicts = [()] + [p for p in paths if isinstance(_container(doc, p), dict)]
            target = _container(doc, data.draw(st.sampled_from(dicts), label="where"))
            target[data.draw(KEYS, label="key")] = data.draw(VALUES, label="value")
            continue
        path = data.draw(st.sampled_from(paths), label="path")
        parent = _container(doc, path[:-1])
        if edit in ("delete", "nudge"):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(VALUES, label="value")
    check_never_a_traceback(doc, batch)
