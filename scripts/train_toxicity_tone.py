"""Train the tone model: MiniLM's top two layers fine-tuned on rude vs polite replies.

Data, all written for training and never for evaluation (``bench/devsets`` holds the
evaluation sets, written separately):

* ``scripts/data/toxicity_replies.jsonl`` and ``toxicity_replies_2.jsonl``: hand-written
  assistant replies, half rude (condescending, dismissive, sarcastic, blaming; most
  without a swear word; a third helpful answers with one jab), half benign ones that
  look risky (kill the process, medicine, history, fiction, quoted insults, blunt but
  respectful reviews);
* ``scripts/data/toxicity_replies_polite.jsonl``: ordinary warm or brisk support
  replies, so that support language itself is not learnt as rude;
* ``scripts/data/toxicity_replies_3.jsonl``: short polite replies (one-line
  confirmations, plain noes, brief corrections, owning a mistake), because the files
  above had twice as many rude replies as polite ones under 80 characters (166, 82) and
  the model learnt brevity as rudeness; benign replies on risky topics (kill, abort,
  medicine, history, crime and fiction summaries, moderation notices quoting an
  insult, firm refusals, blunt reviews); and rude ones without a swear word that
  wear polite words (sarcastic thanks, "happy to explain again", conditional blame,
  mock simplification), at the same lengths as the polite ones;
* the templated rows of ``scripts/toxicity_synthetic.py``.

* the benign training rows of the public sets (Davidson tweets, ToxiGen statements).

Their toxic rows are left to the logistic head (``scripts/train_toxicity_head.py``):
adding them here, even down-weighted, raised the public AUROCs but moved the replies'
operating point (8-12 % of polite dev replies flagged instead of 2-5 %).

15 % of the rows (a hash of the text) are held out and reported. The base model's
layers up to the tail are frozen, so their token states are computed once; only the
copied top layers and a linear layer train. Seeded, CPU, fp32; the weights are saved
as fp16 safetensors (about 7 MB) with the data's hashes and the figures as metadata.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/train_toxicity_tone.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.embeddings import EmbeddingModel  # noqa: E402
from detectors.heads import is_holdout  # noqa: E402
from detectors.tone import TONE_FILE, tone_tail  # noqa: E402
from scripts.toxicity_synthetic import synthetic_rows  # noqa: E402

__all__ = ["main"]

DATA = ROOT / "scripts" / "data"
PUBLIC = ("toxicity_davidson", "toxicity_toxigen_seeds")
FILES = (
    "toxicity_replies.jsonl",
    "toxicity_replies_2.jsonl",
    "toxicity_replies_polite.jsonl",
    "toxicity_replies_3.jsonl",
)
SEED = 1234
LAYERS = 2  # fine-tuned top layers of the six
EPOCHS = 6
LEARNING_RATE = 5e-5
# The output layer's own rate. Its logit is a dot product with a unit vector, so it is
# bounded by the layer's weight norm; at 5e-5 with weight decay that norm stayed small,
# raw probabilities stayed within about 0.26-0.75, and every reply the layers took for
# rude or brusque sat at the same ceiling (0.66 after calibration and the prior), short
# polite replies tied with rude ones. At 1e-3 the range opens (0.01-0.99) and the
# held-out replies' AUROC goes from 0.926 to 0.950 on the same data.
HEAD_LEARNING_RATE = 1e-3
BATCH = 32
HOLDOUT = 0.15


def load_replies() -> tuple[list[dict], dict[str, dict]]:
    """The hand-written replies of ``scripts/data/``, and per file its hash and row count."""
    rows: list[dict] = []
    sources: dict[str, dict] = {}
    for name in FILES:
        data = (DATA / name).read_bytes()
        found = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
        rows += found
        sources[name] = {"sha256": hashlib.sha256(data).hexdigest(), "rows": len(found)}
    return rows, sources


def held_out(text: str) -> bool:
    digest = hashlib.sha256(f"tone:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < HOLDOUT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TONE_FILE)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = parser.parse_args(argv)

    import torch
    from safetensors.torch import save_file
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    embedder = EmbeddingModel(device="cpu", precision="fp32", cache_size=0)
    rows: list[dict] = []
    sources: dict[str, dict] = {}
    replies, sources = load_replies()
    rows += replies
    synthetic = synthetic_rows(SEED)
    rows += synthetic
    sources["scripts/toxicity_synthetic.py"] = {"seed": SEED, "rows": len(synthetic)}
    # The public sets' benign training rows (tweets, statements about groups): casual or
    # blunt language is not a rude tone. Their toxic rows are left to the logistic head
    # (scripts/train_toxicity_head.py), whose score the detector combines with this one.
    for name in PUBLIC:
        data = (args.datasets / f"{name}.jsonl").read_bytes()
        found = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
        kept = [r for r in found if not int(r["label"]) and not is_holdout(name, str(r["id"]))]
        rows += kept
        sources[name] = {"sha256": hashlib.sha256(data).hexdigest(), "rows": len(kept),
                         "kept": "label 0, detectors.heads.is_holdout training rows"}  # fmt: skip

    texts = [str(r["text"]) for r in rows]
    labels = torch.tensor([float(r["label"]) for r in rows])
    public = np.array([bool(r.get("source")) for r in rows])  # the public rows carry one
    hold = np.array([held_out(t) for t in texts]) & ~public
    bert = next(iter(embedder.model)).auto_model
    first = len(bert.encoder.layer) - LAYERS
    states = embedder.encode_with_hidden(texts, first)
    tail = tone_tail(bert.encoder.layer[first:], embedder.dim)
    layers = [p for name, p in tail.named_parameters() if not name.startswith("out.")]
    groups = [{"params": layers}, {"params": list(tail.out.parameters()), "lr": HEAD_LEARNING_RATE}]
    optimiser = torch.optim.AdamW(groups, lr=LEARNING_RATE, weight_decay=0.01)
    train = np.flatnonzero(~hold)
    order = torch.Generator().manual_seed(SEED)

    def predict(index: np.ndarray) -> np.ndarray:
        tail.eval()
        with torch.inference_mode():
            out = [torch.sigmoid(tail([states[i] for i in index[s : s + 64]]))
                   for s in range(0, len(index), 64)]  # fmt: skip
        tail.train()
        return torch.cat(out).numpy()

    tail.train()
    for epoch in range(args.epochs):
        perm = train[torch.randperm(len(train), generator=order).numpy()]
        total = 0.0
        for s in range(0, len(perm), BATCH):
            index = perm[s : s + BATCH]
            logits = tail([states[i] for i in index])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(index)
        print(f"epoch {epoch + 1}/{args.epochs}: training loss {total / len(perm):.4f}")

    test = np.flatnonzero(hold)
    raw = predict(test)
    y = labels[test].numpy()
    # Platt scaling on the held-out replies: the tail's logit is bounded by its small
    # weights on a unit vector, so its raw probabilities sit between about 0.3 and 0.7
    logit = np.log(raw / (1 - raw))[:, None]
    platt = LogisticRegression(C=1e4).fit(logit, y)
    scale, shift = float(platt.coef_[0][0]), float(platt.intercept_[0])
    p = 1 / (1 + np.exp(-(scale * logit[:, 0] + shift)))
    figures = {
        "train_rows": len(train),
        "holdout_rows": len(test),
        "holdout_auroc": round(float(roc_auc_score(y, p)), 4),
        "holdout_polite_flagged": round(float((p[y == 0] >= 0.5).mean()), 4),
        "holdout_rude_flagged": round(float((p[y == 1] >= 0.5).mean()), 4),
    }
    meta = {
        "task": "rudeness of an assistant reply (1 = rude, condescending or toxic)",
        "embedding_model": embedder.name,
        "dim": str(embedder.dim),
        "layers": str(LAYERS),
        "epochs": str(args.epochs),
        "learning_rate": str(LEARNING_RATE),
        "head_learning_rate": str(HEAD_LEARNING_RATE),
        "seed": str(SEED),
        "data": json.dumps(sources),
        "figures": json.dumps(figures),
        "calibration": json.dumps([round(scale, 6), round(shift, 6)]),
        "trained_by": "scripts/train_toxicity_tone.py",
    }
    weights = {k: v.detach().to(torch.float16).contiguous() for k, v in tail.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(args.out), metadata=meta)
    print(json.dumps(figures))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
