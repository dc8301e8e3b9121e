"""PyTorch import: a DLRM-style module lowers to the same IR as its YAML twin.

The reference-style module below follows the structure of facebookresearch/dlrm's
``dlrm_s_pytorch.py`` (ModuleList of sum EmbeddingBags, Sequential Linear+ReLU MLPs ending in a
Sigmoid, ``interact_features`` with ``bmm`` and a lower-triangle gather whose ``li``/``lj`` are
built in ``forward`` from the Gram matrix's shape); it is written here, not copied.
"""

from __future__ import annotations

import copy
from collections import defaultdict

import pytest

from codesign.errors import ImportFailure
from codesign.ir.frontends.lower import lower
from codesign.ir.frontends.torch_import import import_module
from codesign.ir.graph import Graph

torch = pytest.importorskip("torch")
nn = torch.nn

DENSE = 13
DIM = 8
ROWS = (100, 200, 300, 50)
POOLING = (1, 2, 1, 1)
BOTTOM = (32, 8)
TOP = (16, 1)
BATCH = 4

TWIN = {
    "version": 1,
    "kind": "model",
    "name": "torch-twin",
    "arch": "dlrm",
    "dense_features": DENSE,
    "embedding": {
        "dim": DIM,
        "tables": [
            {"rows": ROWS[0], "pooling": POOLING[0], "name": "t0"},
            {"rows": ROWS[1], "pooling": POOLING[1], "name": "t1"},
            {"rows": list(ROWS[2:]), "pooling": POOLING[2], "name": "t2"},
        ],
    },
    "bottom_mlp": list(BOTTOM),
    "top_mlp": list(TOP),
    "interaction": "dot",
}


def twin(interaction: str = "dot", self_interaction: bool = False) -> dict:
    spec = copy.deepcopy(TWIN)
    spec["interaction"] = interaction
    if self_interaction:
        spec["self_interaction"] = True
    return spec


def mlp(sizes: list[int], sigmoid_last: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (fin, fout) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fin, fout, bias=True))
        last = i == len(sizes) - 2
        layers.append(nn.Sigmoid() if last and sigmoid_last else nn.ReLU())
    return nn.Sequential(*layers)


def top_width(op: str, itself: bool) -> int:
    n = len(ROWS) + 1
    if op == "cat":
        return BOTTOM[-1] + DIM * len(ROWS)
    return DIM + (n * (n + 1) // 2 if itself else n * (n - 1) // 2)


class ReferenceDLRM(nn.Module):
    """DLRM as the reference writes it: offsets/ids lists, li/lj built in forward."""

    def __init__(self, op: str = "dot", itself: bool = False) -> None:
        super().__init__()
        self.op, self.itself = op, itself
        self.emb_l = nn.ModuleList(nn.EmbeddingBag(r, DIM, mode="sum") for r in ROWS)
        self.bot_l = mlp([DENSE, *BOTTOM], sigmoid_last=False)
        self.top_l = mlp([top_width(op, itself), *TOP], sigmoid_last=True)

    def interact_features(self, x, ly):
        if self.op == "cat":
            return torch.cat([x, *ly], dim=1)
        batch_size, d = x.shape
        T = torch.cat([x, *ly], dim=1).view((batch_size, -1, d))
        Z = torch.bmm(T, torch.transpose(T, 1, 2))
        _, ni, nj = Z.shape
        offset = 1 if self.itself else 0
        li = torch.tensor([i for i in range(ni) for j in range(i + offset)])
        lj = torch.tensor([j for i in range(nj) for j in range(i + offset)])
        Zflat = Z[:, li, lj]
        return torch.cat([x, Zflat], dim=1)

    def forward(self, dense_x, lS_o, lS_i):
        x = self.bot_l(dense_x)
        ly = [emb(lS_i[k], lS_o[k]) for k, emb in enumerate(self.emb_l)]
        return self.top_l(self.interact_features(x, ly))


class StackedDLRM(nn.Module):
    """The same model written another way: 2-D ids, stack, matmul, tril_indices buffer."""

    def __init__(self, itself: bool = False) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.EmbeddingBag(r, DIM, mode="sum") for r in ROWS)
        self.bottom = mlp([DENSE, *BOTTOM], sigmoid_last=False)
        self.top = mlp([top_width("dot", itself), *TOP], sigmoid_last=True)
        n = len(ROWS) + 1
        self.register_buffer("tri", torch.tril_indices(n, n, offset=0 if itself else -1))

    def forward(self, dense, *ids):
        x = self.bottom(dense)
        T = torch.stack([x, *(t(i) for t, i in zip(self.tables, ids, strict=True))], dim=1)
        Z = T @ T.transpose(-1, -2)
        return self.top(torch.cat([x, Z[:, self.tri[0], self.tri[1]]], dim=1))


def reference_inputs(batch: int = BATCH) -> tuple:
    gen = torch.Generator().manual_seed(0)
    dense = torch.randn(batch, DENSE, generator=gen)
    offsets = [torch.arange(0, batch * p, p) for p in POOLING]
    ids = [torch.randint(0, 50, (batch * p,), generator=gen) for p in POOLING]
    return dense, offsets, ids


def stacked_inputs(batch: int = BATCH) -> tuple:
    gen = torch.Generator().manual_seed(0)
    dense = torch.randn(batch, DENSE, generator=gen)
    return (dense, *(torch.randint(0, 50, (batch, p), generator=gen) for p in POOLING))


def per_op(graph: Graph) -> dict[str, list[tuple]]:
    """Per op type, in topological order: shape, dtype, attrs and the whole per-item cost."""
    out: dict[str, list[tuple]] = defaultdict(list)
    for node in graph.nodes:
        out[node.op].append((node.shape, node.dtype, node.attrs, graph.cost(node).as_dict()))
    return dict(out)


def assert_same_ir(imported: Graph, yaml_graph: Graph) -> None:
    assert [n.op for n in imported.nodes] == [n.op for n in yaml_graph.nodes]
    got, want = per_op(imported), per_op(yaml_graph)
    for op in want:
        assert got[op] == want[op], op
    assert imported.batch == yaml_graph.batch
    assert imported.total_cost() == yaml_graph.total_cost()
    assert imported.total_cost().for_batch(imported.batch) == yaml_graph.total_cost().for_batch(
        yaml_graph.batch
    )


def assert_output_shape(module: nn.Module, inputs: tuple, graph: Graph) -> None:
    with torch.no_grad():
        out = module(*inputs)
    (result,) = graph.inputs_of(graph.output)
    assert tuple(out.shape) == (inputs[0].shape[0], *result.shape)


@pytest.mark.parametrize(
    ("op", "itself"),
    [("dot", False), ("dot", True), ("cat", False)],
    ids=["dot", "dot-self", "cat"],
)
def test_reference_dlrm_matches_yaml_twin(op, itself):
    module = ReferenceDLRM(op, itself).eval()
    inputs = reference_inputs()
    graph = import_module(module, inputs)
    assert_same_ir(graph, lower(twin(op, itself), batch=BATCH))
    assert_output_shape(module, inputs, graph)
    interact = graph.find("interaction")[0]
    assert interact.attrs == {"mode": op, "self_interaction": itself, "dense_first": True}
    # readable names from the module tree
    assert [n.name for n in graph.find("dense")] == ["bot_l.0", "bot_l.2", "top_l.0", "top_l.2"]
    assert graph.node("emb_l.1").attrs["pooling"] == 2


@pytest.mark.parametrize("itself", [False, True], ids=["dot", "dot-self"])
def test_stacked_variant_with_tril_indices_matches_the_same_twin(itself):
    module = StackedDLRM(itself).eval()
    inputs = stacked_inputs()
    graph = import_module(module, inputs, name="stacked", batch=512)
    assert graph.name == "stacked" and graph.batch == 512
    assert_same_ir(graph, lower(twin("dot", itself), batch=512))
    assert_output_shape(module, inputs, graph)


def test_uneven_bags_use_the_rounded_mean_pooling():
    module = ReferenceDLRM().eval()
    dense, offsets, ids = reference_inputs()
    offsets[1] = torch.tensor([0, 1, 3, 6])  # bags of 1, 2, 3 and 1 ids
    ids[1] = torch.randint(0, 50, (7,))
    graph = import_module(module, (dense, offsets, ids))
    bag = graph.node("emb_l.1")
    assert bag.attrs["pooling"] == 2 and bag.meta["pooling_mean"] == 1.75
    assert graph.node("emb_l.1_ids").shape == (2,)


def test_an_activation_with_other_users_stays_a_separate_node():
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 6)

        def forward(self, x):
            h = self.fc(x)
            return torch.relu(h) + h

    graph = import_module(Residual().eval(), (torch.randn(3, 6),))
    assert [n.op for n in graph.nodes] == ["input", "dense", "elementwise", "elementwise", "output"]
    assert graph.node("fc").attrs["activation"] == "none"
    assert [n.attrs["fn"] for n in graph.find("elementwise")] == ["relu", "add"]


class WithFFT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(DENSE, 8)

    def forward(self, x):
        return torch.fft.fft(self.fc(x)).real


class WithConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3)

    def forward(self, x):
        return torch.sigmoid(self.conv(x))


class WrongTriangle(ReferenceDLRM):
    """Gathers as many entries as the strict triangle, but (1, 1) instead of (1, 0)."""

    def interact_features(self, x, ly):
        batch_size, d = x.shape
        T = torch.cat([x, *ly], dim=1).view((batch_size, -1, d))
        Z = torch.bmm(T, torch.transpose(T, 1, 2))
        n = Z.shape[1]
        li = torch.tensor([i for i in range(n) for j in range(i)])
        lj = torch.tensor([i if i == 1 else j for i in range(n) for j in range(i)])
        return torch.cat([x, Z[:, li, lj]], dim=1)


class DataDependent(nn.Module):
    def forward(self, x):
        return x * 2 if x.sum() > 0 else x


@pytest.mark.parametrize(
    ("module", "inputs", "message"),
    [
        (
            WithFFT(),
            (torch.randn(BATCH, DENSE),),
            r"^cannot lower call_function aten\.fft_fft\.default at node 'fft_fft': ",
        ),
        (
            WithConv(),
            (torch.randn(BATCH, 2, 16),),
            r"^cannot lower call_function aten\.conv1d\.default at node 'conv1d' "
            r"\(module 'conv': Conv1d\): the IR has no equivalent op$",
        ),
        (
            WrongTriangle(),
            reference_inputs(),
            r"at node 'index': gathers 10 entries of a 5x5 Gram matrix: neither the strict",
        ),
        (
            DataDependent(),
            (torch.randn(BATCH, 3),),
            r"^torch\.export could not trace DataDependent",
        ),
    ],
    ids=["fft", "conv1d", "wrong-triangle", "data-dependent"],
)
def test_unsupported_modules_fail_with_one_line(module, inputs, message):
    with pytest.raises(ImportFailure, match=message) as info:
        import_module(module.eval(), inputs)
    assert "\n" not in str(info.value)


def test_bad_arguments_are_import_failures():
    with pytest.raises(ImportFailure, match="expected a torch.nn.Module"):
        import_module(lambda x: x, (torch.randn(2, 3),))
    with pytest.raises(ImportFailure, match="must be a tuple"):
        import_module(WithFFT(), torch.randn(2, DENSE))


class NeuMF(nn.Module):
    """NeuMF with nn.Embedding lookups, a GMF product and an MLP tower over concat."""

    def __init__(self) -> None:
        super().__init__()
        self.mf_user, self.mf_item = nn.Embedding(1000, 8), nn.Embedding(500, 8)
        self.mlp_user, self.mlp_item = nn.Embedding(1000, 16), nn.Embedding(500, 16)
        self.mlp = nn.Sequential(
            nn.Linear(32, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 8), nn.ReLU()
        )
        self.final = nn.Linear(16, 1)

    def forward(self, user, item):
        gmf = self.mf_user(user) * self.mf_item(item)
        tower = self.mlp(torch.cat([self.mlp_user(user), self.mlp_item(item)], dim=1))
        return torch.sigmoid(self.final(torch.cat([gmf, tower], dim=1)))


def test_neumf_with_embeddings_matches_its_yaml_twin():
    spec = {
        "version": 1,
        "kind": "model",
        "name": "neumf-twin",
        "arch": "neumf",
        "users": 1000,
        "items": 500,
        "mf_dim": 8,
        "mlp_layers": [32, 16, 8],
    }
    inputs = (torch.randint(0, 500, (6,)), torch.randint(0, 500, (6,)))
    module = NeuMF().eval()
    graph = import_module(module, inputs)
    assert_same_ir(graph, lower(spec, batch=6))
    assert_output_shape(module, inputs, graph)


def test_mean_bags_last_offsets_and_summed_embedding_sequences():
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bag = nn.EmbeddingBag(100, 4, mode="mean", include_last_offset=True)
            self.seq = nn.Embedding(100, 4)
            self.fc = nn.Linear(12, 1)

        def forward(self, x, ids, offsets, history):
            pooled = self.seq(history).sum(dim=1)
            return self.fc(torch.cat([x, self.bag(ids, offsets), pooled], dim=1))

    inputs = (
        torch.randn(3, 4),
        torch.randint(0, 100, (6,)),
        torch.tensor([0, 2, 4, 6]),
        torch.randint(0, 100, (3, 5)),
    )
    graph = import_module(Mixed(), inputs)
    bag, seq = graph.node("bag"), graph.node("seq")
    assert (bag.attrs["mode"], bag.attrs["pooling"]) == ("mean", 2)
    assert (seq.attrs["mode"], seq.attrs["pooling"], seq.shape) == ("sum", 5, (4,))
    assert graph.find("concat")[0].shape == (12,)
    assert graph.node("fc").attrs["activation"] == "none"
