"""Model families: the model variants trained together on one dataset, and the training spec of
a zoo model for a dataset.

A family is a registered name (``recpipe-criteo``: RM-small/med/large; ``recpipe-movielens-1m``
and ``-20m``: RecPipe's NeuMF small/medium/large) or a comma list of zoo names and spec files.

**Training spec.** The zoo specs carry the full cardinalities of the datasets they were
published for (Criteo Kaggle: 33.8M rows), which the cost models use. A model trained on a
dataset needs one table row per id the dataset can produce, so the *training spec* is the zoo
spec with only the row counts replaced: DLRM table i gets the dataset's cardinality of
categorical column i (the synthetic default: Criteo's cardinalities capped at 200), NeuMF gets
the dataset's user and item counts. Everything that sets the cost per item (embedding dim,
pooling, MLPs, interaction) is unchanged, so ``lower()`` of the training spec and of the zoo spec
have the same ops, shapes and MACs per item; only table sizes differ. The cache records both
spec hashes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from codesign.errors import CodesignError
from codesign.ir.frontends.spec import ModelSpec, load_spec
from codesign.ir.frontends.zoo import resolve
from codesign.quality.errors import QualityError

DEFAULT_FAMILY = "recpipe-criteo"


@dataclass(frozen=True)
class Family:
    name: str
    models: tuple[str, ...]
    description: str = ""
    #: MovieLens families: candidates per query and validation queries (RecPipe's setting).
    defaults: dict = field(default_factory=dict)


FAMILIES = {
    f.name: f
    for f in (
        Family(
            "recpipe-criteo",
            ("rm-small", "rm-med", "rm-large"),
            "RecPipe's Criteo DLRMs RM-small/med/large (embedding dims 4/16/32)",
        ),
        Family(
            "recpipe-movielens-1m",
            ("neumf-ml1m-small", "neumf-ml1m-medium", "neumf-ml1m-large"),
            "RecPipe's MovieLens-1M NeuMF models; pools of 1000 (999 negatives), 2800 users",
            {"pool_size": 1000, "val_samples": 1000 * 2800},
        ),
        Family(
            "recpipe-movielens-20m",
            ("neumf-ml20m-small", "neumf-ml20m-medium", "neumf-ml20m-large"),
            "RecPipe's MovieLens-20M NeuMF models; pools of 4000 (3999 negatives), 5000 users",
            {"pool_size": 4000, "val_samples": 4000 * 5000},
        ),
    )
}


def resolve_family(text: str) -> tuple[str, list[ModelSpec]]:
    """A family name, or a comma list of zoo model names / spec files -> (name, specs)."""
    text = str(text).strip()
    if not text:
        raise QualityError(f"no family given (e.g. --family {DEFAULT_FAMILY})")
    if text.lower() in FAMILIES:
        family = FAMILIES[text.lower()]
        return family.name, [resolve(m) for m in family.models]
    specs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            specs.append(resolve(part))
        except CodesignError as exc:
            names = ", ".join(FAMILIES)
            raise QualityError(
                f"--family {text!r}: {part!r} is neither a family ({names}) nor a model: {exc}"
            ) from None
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise QualityError(f"--family lists model {dupes[0]!r} twice; model names must differ")
    return text, specs


def family_defaults(name: str) -> dict:
    family = FAMILIES.get(name.lower())
    return dict(family.defaults) if family else {}


def training_spec(
    spec: ModelSpec, *, task: str, cardinalities: tuple[int, ...], dense_features: int
) -> ModelSpec:
    """``spec`` with its rows replaced by the dataset's cardinalities (see the module docstring)."""
    data = spec.to_dict()
    if spec.arch == "dlrm":
        if task != "ctr":
            raise QualityError(
                f"{spec.name} is a DLRM: it trains on a CTR dataset (synthetic or criteo:PATH), "
                "not MovieLens"
            )
        tables = spec.config["embedding"]["tables"]
        if len(tables) != len(cardinalities):
            raise QualityError(
                f"{spec.name} has {len(tables)} embedding tables but the dataset has "
                f"{len(cardinalities)} categorical features; they must match one to one"
            )
        if spec.config["dense_features"] != dense_features:
            raise QualityError(
                f"{spec.name} takes {spec.config['dense_features']} dense features but the "
                f"dataset has {dense_features}"
            )
        if any(t["pooling"] != 1 for t in tables):
            raise QualityError(
                f"{spec.name} pools several ids per table; the datasets give one id per "
                "categorical feature (pooling 1)"
            )
        emb = copy.deepcopy(data["embedding"])
        emb["tables"] = [
            {"rows": rows, "pooling": 1, "name": t["name"]}
            for t, rows in zip(tables, cardinalities, strict=True)
        ]
        data["embedding"] = emb
    elif spec.arch == "neumf":
        if task != "implicit":
            raise QualityError(
                f"{spec.name} is a NeuMF model: it trains on MovieLens (--dataset "
                "movielens:PATH), not on a CTR dataset"
            )
        data["users"], data["items"] = cardinalities
    else:
        raise QualityError(
            f"model {spec.name!r} is a {spec.arch} spec; quality training supports the dlrm "
            "and neumf families"
        )
    origin = spec.path or f"zoo:{spec.name}"
    return load_spec(data, origin=f"training spec of {Path(origin).name}")
