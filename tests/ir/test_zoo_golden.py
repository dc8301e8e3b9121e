"""Zoo numbers against the derived columns of ../shared/docs/BACKGROUND.md.

Sources of every golden number:
- §1.3 table "Per-stage model configs": RecPipe RM-small/med/large MACs/item (MLP layers only,
  the way the table derives them), embedding bytes/item fp32 (4 B x d x 26 lookups) and full table
  size fp32 (33,762,577 Criteo Kaggle rows x d x 4 B; table rounds to 0.54/2.16/4.32 GB).
- §2.2 table "The eight models": DeepRecInfra MACs/item, emb bytes/item fp32 and emb size fp32
  (rounded to 0.1 GB there), top-MLP input dims.
- The 17-model zoo composition is issue 2's list: 8 DeepRecInfra + RM-S/M/L + 6 NeuMF configs.
"""

from __future__ import annotations

import pytest

from codesign import api
from codesign.ir.frontends.lower import lower
from codesign.ir.frontends.spec import load_spec
from codesign.ir.frontends.zoo import list_models, resolve

CRITEO_ROWS = 33_762_577  # BACKGROUND §1.2: sum of the 26 Criteo Kaggle cardinalities


def totals(name: str, batch: int = 1) -> dict:
    return api.model_totals(lower(name, batch=batch))


def test_zoo_has_the_17_models_of_the_issue():
    names = {e.name for e in list_models()}
    assert names == {
        "dlrm-rmc1",
        "dlrm-rmc2",
        "dlrm-rmc3",
        "ncf",
        "wnd",
        "mt-wnd",
        "din",
        "dien",
        "rm-small",
        "rm-med",
        "rm-large",
        "neumf-ml1m-small",
        "neumf-ml1m-medium",
        "neumf-ml1m-large",
        "neumf-ml20m-small",
        "neumf-ml20m-medium",
        "neumf-ml20m-large",
    }


@pytest.mark.parametrize(
    ("name", "dim", "dense_macs", "top_in"),
    [  # BACKGROUND §1.3: MACs/item [D] and "top MLP incl. interaction" 351 + d
        ("rm-small", 4, 23_872, 355),
        ("rm-med", 16, 25_408, 367),
        ("rm-large", 32, 217_600, 383),
    ],
)
def test_recpipe_criteo_models(name, dim, dense_macs, top_in):
    t = totals(name)
    assert t["macs_per_item_by_op"]["dense"] == dense_macs
    # the dot interaction's own MACs: 351 distinct pairs of d-vectors (27 choose 2)
    assert t["macs_per_item_by_op"]["interaction"] == 351 * dim
    assert t["macs_per_item"] == dense_macs + 351 * dim
    assert t["embedding_bytes_per_item"] == 4 * dim * 26  # §1.3 emb bytes/item fp32
    assert t["embedding_table_bytes"] == CRITEO_ROWS * dim * 4
    assert t["embedding_table_bytes"] / 1e9 == pytest.approx(
        {4: 0.54, 16: 2.16, 32: 4.32}[dim], abs=0.005
    )
    assert lower(name).node("top_0").attrs["in_features"] == top_in


@pytest.mark.parametrize(
    ("name", "macs", "emb_bytes", "emb_gb", "top_in"),
    [  # BACKGROUND §2.2, columns MACs/item, emb bytes/item fp32, emb size fp32, top in-dim
        ("dlrm-rmc1", 100_416, 81_920, 4.1, 288),  # 10,240 bottom + 90,176 top ("100K")
        ("dlrm-rmc2", 319_552, 983_040, 4.1, 2112),  # "320K"
        ("dlrm-rmc3", 3_203_328, 25_600, 2.6, 352),  # "3.2M"
        ("wnd", 2_064_640, 3_456, 3.5, 1376),  # "2.06M"
        ("mt-wnd", 2_621_440, 5_504, 3.9, 1888),  # "2.62M (1 task)"
        ("ncf", 147_456, 1_024, 0.09, None),  # "~147K"
    ],
)
def test_deeprecinfra_models(name, macs, emb_bytes, emb_gb, top_in):
    t = totals(name)
    assert t["macs_per_item"] == macs
    assert t["embedding_bytes_per_item"] == emb_bytes
    assert t["embedding_table_bytes"] / 1e9 == pytest.approx(emb_gb, abs=0.05)
    if top_in is not None:
        first = "top_0" if name.startswith("dlrm") else "deep_0"
        assert lower(name).node(first).attrs["in_features"] == top_in


def test_rmc1_model_size_is_tables_plus_mlp_weights():
    # 8 x 4M x 32 x 4 B tables + fp32 MLP weights and biases (128-64-32 bottom, 288-256-64-1 top)
    mlp_params = (128 * 64 + 64) + (64 * 32 + 32) + (288 * 256 + 256) + (256 * 64 + 64) + (64 + 1)
    t = totals("dlrm-rmc1")
    assert t["embedding_table_bytes"] == 8 * 4_000_000 * 32 * 4
    assert t["model_size_bytes"] == 8 * 4_000_000 * 32 * 4 + 4 * mlp_params


def test_din_matches_table_and_attention_formula():
    t = totals("din")
    assert t["macs_per_item_by_op"]["dense"] == 41_760  # §2.2 "~42K + attention" (top MLP)
    assert t["embedding_bytes_per_item"] == 1_536  # 4 tables x 3 lookups x 32 x 4 B
    assert t["embedding_table_bytes"] == 21_100_000 * 32 * 4  # 2.7 GB
    # attention: 3 keys x (96*1 + 1*1 MLP + 32 weighted-sum MACs)
    assert t["macs_per_item_by_op"]["attention"] == 3 * (96 + 1 + 32)
    assert lower("din").node("top_0").attrs["in_features"] == 128  # 4d


def test_dien_rnn_matches_table_and_gru_is_selectable():
    t = totals("dien")
    # §2.2: top 160-200-80-2 = "~48K"; 2-layer RNN hidden 64 over 40 steps = "~0.57M"
    assert t["macs_per_item_by_op"]["dense"] == 160 * 200 + 200 * 80 + 80 * 2 == 48_160
    rnn = 40 * ((32 * 64 + 64 * 64) + (64 * 64 + 64 * 64))
    assert t["macs_per_item_by_op"]["recurrent"] == rnn == 573_440
    assert t["embedding_bytes_per_item"] == 5_504
    spec = resolve("dien").to_dict()
    spec["sequence"]["cell"] = "gru"
    gru = api.model_totals(lower(load_spec(spec)))
    assert gru["macs_per_item_by_op"]["recurrent"] == 3 * rnn  # GRU: 3 gates


def test_mt_wnd_task_count_is_selectable():
    spec = resolve("mt-wnd").to_dict()
    spec["tasks"] = 3
    t = api.model_totals(lower(load_spec(spec)))
    assert t["macs_per_item"] == 2_457_600 + 3 * 163_840  # shared + per-task (512-256-128)


@pytest.mark.parametrize(
    ("name", "macs"),
    [  # MLP tower as written in RecPipe's JSON, final layer (mf_dim + last width) -> 1
        ("neumf-ml1m-small", 64 * 32 + 32 * 1 + 129),
        ("neumf-ml1m-medium", 800 * 512 + 512 * 256 + 256 * 128 + 128 * 64 + 64 * 32 + 32 + 17),
        ("neumf-ml1m-large", 1024 * 512 + 512 * 256 + 256 * 128 + 128 + 129),
        ("neumf-ml20m-small", 32 + 2),
        ("neumf-ml20m-medium", 16 * 512 + 512 * 256 + 256 * 128 + 128 * 64 + 64 * 32 + 32 + 17),
        ("neumf-ml20m-large", 64 * 2048 + 2048 * 512 + 512 * 256 + 256 * 128 + 128 * 64 + 64 + 65),
    ],
)
def test_neumf_configs(name, macs):
    assert totals(name)["macs_per_item"] == macs


def test_batch_scales_per_item_costs_not_weights():
    one, many = totals("rm-large", 1), totals("rm-large", 4096)
    assert many["macs_per_batch"] == 4096 * one["macs_per_item"]
    assert many["embedding_bytes_per_batch"] == 4096 * 3_328
    assert many["model_size_bytes"] == one["model_size_bytes"]


def test_cat_interaction_reproduces_recpipe_accel_sizing():
    # BACKGROUND §1.3 quirk: RecPipe's accelerator model sizes the top MLP as d * (26 + 1)
    spec = resolve("rm-large").to_dict()
    spec["interaction"] = "cat"
    assert lower(load_spec(spec)).node("top_0").attrs["in_features"] == 32 * 27
