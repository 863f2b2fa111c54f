"""The claims' options, in one table read by both the pytest plugin (claims/plugin.py) and `lpi-claims report`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    name: str  # the command-line flag without "--"; SuiteConfig's field is the name with "_"
    help: str
    default: object = None
    kind: type = str  # str, int, bool (a flag)
    choices: tuple[str, ...] = ()

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option(
        "suite", "miniature (embedded default) or paper (hub checkpoints)", "miniature", choices=("miniature", "paper")
    ),
    Option("preset", "miniature preset: smoke, default, compact or large", "default"),
    Option(
        "gpu", "run attribution on CUDA in bfloat16 and train the miniature there (default: CPU, float32)", False, bool
    ),
    Option(
        "moe-model",
        "--suite paper: the MoE series, a hub repository (default allenai/OLMoE-1B-7B-0924), a local directory "
        "of checkpoints, one checkpoint directory or a .gguf file",
    ),
    Option(
        "dense-model",
        "--suite paper: the dense series, a hub repository (default allenai/OLMo-7B), a local directory "
        "of checkpoints, one checkpoint directory or a .gguf file",
    ),
    Option("checkpoints", "comma-separated training steps: a subset of the series", ""),
    Option("examples", "use N of the 906 evaluation examples (a quick look)", None, int),
    Option("bootstrap", "bootstrap resamples for the 95%% intervals", 1000, int),
    Option(
        "seeds", "training seeds of the miniature run (default: the preset's); each seed is its own series", None, int
    ),
    Option(
        "rank-by",
        "ablated units: abs (the S_t set, largest |I|) or positive (largest positive I)",
        "abs",
        choices=("abs", "positive"),
    ),
    Option(
        "target",
        "attributed token: answer (its first token) or predicted (the model's top-1)",
        "answer",
        choices=("answer", "predicted"),
    ),
    Option(
        "st-rank",
        "S_t ranks units by abs-mean (|mean I|, the paper's I_t) or mean-abs (mean |I|)",
        "abs-mean",
        choices=("abs-mean", "mean-abs"),
    ),
    Option(
        "attn-positions",
        "attention neurons: sum (sum the source positions' vectors, then one LPI) or each (sum of per-position LPIs)",
        "sum",
        choices=("sum", "each"),
    ),
    Option(
        "rho-pairs",
        "ρ_avg over consecutive checkpoint pairs or all pairs",
        "consecutive",
        choices=("consecutive", "all"),
    ),
    Option(
        "dense-end",
        (
            "the miniature dense run's end on the paper scale: end (1.2M, the same stretch as the MoE's) "
            "or 600k (OLMo's last step)"
        ),
        "end",
        choices=("end", "600k"),
    ),
    Option(
        "margin",
        (
            "equivalence margin around a value the paper only reports, as a fraction of the quantity's range "
            "(0.05: 5 points of a drop)"
        ),
        0.05,
        float,
    ),
    Option("lpi-mode", "exact Gated-LPI (the paper's score) or first-order (a faster approximation)", "exact"),
    Option(
        "disk-budget",
        (
            "--suite paper: stream the revisions within this much disk (e.g. 60GB), "
            "removing each once its record is stored"
        ),
    ),
    Option("cache-dir", "cache for checkpoints and records (default $LPI_CLAIMS_CACHE or ~/.cache/lpi-claims)"),
    Option("report-dir", "where claims.md, claims.json and the figures go", "reports"),
)

READINGS = (
    "rank_by",
    "target",
    "st_rank",
    "attn_positions",
    "rho_pairs",
    "dense_end",
)  # the options that choose a reading the paper leaves open
