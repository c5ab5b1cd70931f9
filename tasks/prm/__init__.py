"""Process reward models: train a step-level classifier, score solutions, evaluate, compare.

- `config`: the typed settings of training, evaluation and the nightly loop.
- `model`: the input format (prompt, then each step followed by a separator token) and loading.
- `data`: a dataset version's Parquet export as typed examples with their training targets.
- `train`: the resumable training loop.
- `score`: `PRMScorer`, per-step scores and their aggregates.
- `evaluate`: first-error identification, Best-of-N, calibration, label distribution.
- `report`: the self-contained HTML report.
- `registry`: the models, evaluations and decisions tables.
- `loop`: the nightly loop's decisions (which seed next, is the candidate better).
"""
