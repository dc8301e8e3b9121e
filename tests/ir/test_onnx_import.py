"""ONNX import: zoo models exported by ``torch.onnx.export`` lower to the same IR as their specs.

The exports use the TorchScript exporter (``dynamo=False``): it needs no onnxscript and writes
``nn.EmbeddingBag`` as a Loop over the bags, ``nn.Embedding`` as a Gather. Zoo tables have up to
10M rows (4 GB for dlrm-rmc1), so the modules are built with tables of a few rows and the exported
tables then get the spec's rows as external data, as torch writes models over 2 GB: the graph
torch writes does not depend on the rows, and the importer reads a weight's dims only.
"""

from __future__ import annotations

import io
import json
import warnings

import pytest
from typer.testing import CliRunner

from codesign.cli import app
from codesign.errors import ImportFailure
from codesign.ir.frontends.lower import lower
from codesign.ir.frontends.spec import load_spec
from codesign.ir.frontends.zoo import resolve

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from test_torch_import import (  # noqa: E402  (the PyTorch importer's comparison, reused)
    BATCH,
    NeuMF,
    ReferenceDLRM,
    StackedDLRM,
    WithConv,
    assert_same_ir,
    reference_inputs,
    stacked_inputs,
    twin,
)

from codesign.ir.frontends.onnx_import import import_onnx  # noqa: E402
from codesign.quality.train import build_module, example_inputs  # noqa: E402

nn = torch.nn
SMALL_ROWS = 16


def export(module: nn.Module, inputs: tuple, **kwargs) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module.eval(), inputs, buffer, dynamo=False, **kwargs)
    return buffer.getvalue()


def with_rows(model_bytes: bytes, rows: dict[str, int]) -> bytes:
    """The exported tables (initializer name -> rows) resized, their data external."""
    model = onnx.load_model_from_string(model_bytes)
    for tensor in model.graph.initializer:
        if tensor.name in rows:
            tensor.dims[0] = rows[tensor.name]
            tensor.ClearField("raw_data")
            tensor.data_location = onnx.TensorProto.EXTERNAL
            del tensor.external_data[:]
            entry = tensor.external_data.add()
            entry.key, entry.value = "location", "tables.bin"
    return model.SerializeToString()


def small(spec, **config):
    data = spec.to_dict()
    data.update(config)
    return load_spec(data)


def dlrm_export(name: str, batch: int) -> tuple[bytes, object]:
    """The zoo's own DLRM module (``build_module``) with small tables, exported; then resized."""
    zoo = resolve(name)
    tables = zoo.config["embedding"]["tables"]
    emb = {
        **zoo.to_dict()["embedding"],
        "tables": [
            {"rows": max(SMALL_ROWS, t["pooling"]), "pooling": t["pooling"], "name": t["name"]}
            for t in tables
        ],
    }
    module = build_module(small(zoo, embedding=emb))
    data = export(module, example_inputs(small(zoo, embedding=emb), batch))
    return with_rows(data, {f"tables.{i}.weight": t["rows"] for i, t in enumerate(tables)}), zoo


class WideDeep(nn.Module):
    """DeepRecSys' Wide&Deep as ``lower`` builds it: dense input and one bag per table
    concatenated into the deep MLP."""

    def __init__(self, cfg: dict, rows: int) -> None:
        super().__init__()
        dim = cfg["embedding"]["dim"]
        self.tables = nn.ModuleList(
            nn.EmbeddingBag(rows, dim, mode="sum") for _ in cfg["embedding"]["tables"]
        )
        width = cfg["dense_features"] + dim * len(self.tables)
        self.deep = _mlp([width, *cfg["deep_mlp"]], cfg["output_activation"])

    def forward(self, dense, *ids):
        return self.deep(
            torch.cat([dense, *(t(i) for t, i in zip(self.tables, ids, strict=True))], dim=1)
        )


def _mlp(sizes: list[int], last: str) -> nn.Sequential:
    """Linear+ReLU, the last layer's activation ``last``."""
    acts = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "none": nn.Identity}
    layers: list[nn.Module] = []
    for i, (fin, fout) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        final = i == len(sizes) - 2
        layers += [nn.Linear(fin, fout), acts[last if final else "relu"]()]
    return nn.Sequential(*layers)


def ncf_export(batch: int) -> tuple[bytes, object]:
    """The zoo's own NeuMF module (``build_module``, not for training: ncf ends in a ReLU)
    with small tables, exported; then resized."""
    zoo = resolve("ncf")
    spec = small(zoo, users=SMALL_ROWS, items=SMALL_ROWS)
    module = build_module(spec, train=False)
    users, items = zoo.config["users"], zoo.config["items"]
    rows = {"mf_user.weight": users, "mlp_user.weight": users}
    rows |= {"mf_item.weight": items, "mlp_item.weight": items}
    return with_rows(export(module, example_inputs(spec, batch)), rows), zoo


@pytest.mark.parametrize("name", ["rm-small", "dlrm-rmc1", "ncf"])
def test_exported_zoo_models_import_to_the_ir_of_their_specs(name):
    batch = 3
    data, zoo = ncf_export(batch) if name == "ncf" else dlrm_export(name, batch)
    graph = import_onnx(data)
    assert_same_ir(graph, lower(zoo, batch=batch))  # op by op: shapes, attrs, MACs, bytes
    rows = [n.attrs["rows"] for n in graph.find("embedding_bag")]
    assert rows == [n.attrs["rows"] for n in lower(zoo).find("embedding_bag")]
    assert graph.batch == batch and graph.meta["arch"] == "onnx"


def test_wide_and_deep_imports_to_the_ir_of_its_spec():
    zoo = resolve("wnd")
    cfg = zoo.config
    gen = torch.Generator().manual_seed(0)
    inputs = (
        torch.randn(2, cfg["dense_features"], generator=gen),
        *(torch.randint(0, SMALL_ROWS, (2, 1), generator=gen) for _ in cfg["embedding"]["tables"]),
    )
    data = export(WideDeep(cfg, SMALL_ROWS), inputs)
    rows = {f"tables.{i}.weight": t["rows"] for i, t in enumerate(cfg["embedding"]["tables"])}
    assert_same_ir(import_onnx(with_rows(data, rows), batch=64), lower(zoo, batch=64))


@pytest.mark.parametrize(
    ("op", "itself"),
    [("dot", False), ("dot", True), ("cat", False)],
    ids=["dot", "dot-self", "cat"],
)
def test_reference_dlrm_with_offsets_matches_its_yaml_twin(op, itself):
    """1-D ids with offsets as inputs, concat + view to (B, n, d), li/lj built in forward."""
    graph = import_onnx(export(ReferenceDLRM(op, itself), reference_inputs()))
    assert_same_ir(graph, lower(twin(op, itself), batch=BATCH))
    assert [n.name for n in graph.find("dense")] == ["bot_l.0", "bot_l.2", "top_l.0", "top_l.2"]


def test_stacked_dlrm_and_neumf_match_their_twins_and_the_torch_import():
    from codesign.ir.frontends.torch_import import import_module

    stacked = import_onnx(export(StackedDLRM(True), stacked_inputs()))
    assert_same_ir(stacked, import_module(StackedDLRM(True).eval(), stacked_inputs()))
    assert_same_ir(stacked, lower(twin("dot", True), batch=BATCH))
    neumf = {"version": 1, "kind": "model", "name": "neumf-twin", "arch": "neumf"}
    neumf |= {"users": 1000, "items": 500, "mf_dim": 8, "mlp_layers": [32, 16, 8]}
    ids = (torch.randint(0, 500, (6,)), torch.randint(0, 500, (6,)))
    assert_same_ir(import_onnx(export(NeuMF(), ids)), lower(neumf, batch=6))


def test_mean_bags_and_summed_embedding_sequences():
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bag = nn.EmbeddingBag(100, 4, mode="mean")
            self.seq = nn.Embedding(100, 4)
            self.fc = nn.Linear(12, 1)

        def forward(self, x, ids, history):
            pooled = self.seq(history).sum(dim=1)
            return self.fc(torch.cat([x, self.bag(ids), pooled], dim=1))

    inputs = (torch.randn(3, 4), torch.randint(0, 100, (3, 2)), torch.randint(0, 100, (3, 5)))
    graph = import_onnx(export(Mixed(), inputs))
    bag, seq = graph.node("bag"), graph.node("seq")
    assert (bag.attrs["mode"], bag.attrs["pooling"]) == ("mean", 2)
    assert (seq.attrs["mode"], seq.attrs["pooling"], seq.shape) == ("sum", 5, (4,))
    assert graph.find("concat")[0].shape == (12,)


def test_a_symbolic_batch_takes_the_batch_argument_and_files_load_external_data_lazily(tmp_path):
    data = export(
        StackedDLRM(),
        stacked_inputs(),
        input_names=["dense", "t0", "t1", "t2", "t3"],
        dynamic_axes={n: {0: "batch"} for n in ["dense", "t0", "t1", "t2", "t3"]},
    )
    path = tmp_path / "stacked.onnx"
    onnx.save_model(
        onnx.load_model_from_string(data),
        path,
        save_as_external_data=True,
        location="stacked.weights",
        size_threshold=1024,  # onnx's default: the tables; the triangle's indices stay inline
    )
    graph = import_onnx(path, batch=256)
    (tmp_path / "stacked.weights").unlink()  # the importer reads weights' dims only
    assert_same_ir(import_onnx(path, batch=256), graph)
    assert graph.name == "stacked" and graph.batch == 256
    assert_same_ir(graph, lower(twin("dot"), batch=256))


def test_models_show_reads_an_onnx_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(dlrm_export("rm-small", 2)[0])
    saved = tmp_path / "ir.json"
    args = ["models", "show", str(path), "--json", "--batch", "8", "--save-ir", str(saved)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert json.loads(saved.read_text())["batch"] == 8
    want = lower(resolve("rm-small"), batch=8)
    assert info["model"] == "model" and info["arch"] == "onnx" and info["batch"] == 8
    assert info["totals"]["macs_per_item"] == want.total_cost().macs_per_item
    assert [r["op"] for r in info["ops"]] == [
        n.op for n in want.nodes if n.op not in ("input", "output")
    ]


def test_refused_onnx_files_give_one_line(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 5)
    conv = tmp_path / "conv.onnx"
    conv.write_bytes(export(WithConv(), (torch.randn(BATCH, 2, 16),)))
    runner = CliRunner()
    for path, message in [
        (text, f"{text}: not an ONNX model"),
        (conv, f"{conv}: cannot lower ONNX node '/conv/Conv' (Conv): the IR has no equivalent op"),
        (tmp_path / "missing.onnx", "no such file"),
    ]:
        result = runner.invoke(app, ["models", "show", str(path)])
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.output
    with pytest.raises(ImportFailure, match=r"^ONNX bytes: not an ONNX model"):
        import_onnx(b"\x00\x01garbage")


def test_a_missing_onnx_package_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(
        ImportFailure, match=r"needs the onnx package: pip install 'codesign\[onnx\]'"
    ):
        import_onnx(b"")
