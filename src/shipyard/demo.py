"""The ``shipyard demo``: train a small fraud model on synthetic data, register it, promote it, score with it.

Everything runs locally in a few seconds and is also callable from Python::

    from shipyard.demo import run_demo
    run_demo()            # uses shipyard.connect(), prints to the terminal

Running it again registers the next version of ``fraud`` and moves ``production`` to it.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from shipyard.registry import ModelVersion
    from shipyard.service import ModelService

MODEL_NAME = "fraud"
ALIAS = "production"
TARGET = "is_fraud"
NUMERIC = ["amount", "hour", "merchant_risk", "distance_km", "card_age_days"]
CHANNELS = ("web", "pos", "app")
FRAUD_RATE = 0.05
SHOWN_ROWS = 5


def make_transactions(rows: int = 5000, seed: int = 7) -> pd.DataFrame:
    """Synthetic card transactions with an ``is_fraud`` target (about 5% positives), reproducible by ``seed``.

    >>> frame = make_transactions(2000, seed=1)
    >>> list(frame.columns)
    ['amount', 'hour', 'merchant_risk', 'distance_km', 'card_age_days', 'channel', 'is_foreign', 'is_fraud']
    >>> bool(0.03 < frame["is_fraud"].mean() < 0.07)
    True
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(mean=3.6, sigma=1.1, size=rows), 2)
    hour = rng.integers(0, 24, size=rows)
    merchant_risk = np.round(rng.beta(2.0, 8.0, size=rows), 4)
    distance_km = np.round(rng.exponential(25.0, size=rows), 2)
    card_age_days = rng.integers(1, 3650, size=rows)
    channel = rng.choice(np.array(CHANNELS), size=rows, p=[0.35, 0.5, 0.15])
    is_foreign = rng.random(rows) < 0.08

    night = (hour < 6) | (hour >= 23)
    risk = (
        1.2 * (np.log(amount) - 3.6)
        + 9.0 * (merchant_risk - 0.2)
        + 0.02 * distance_km
        + 1.5 * night
        + 2.0 * is_foreign
        + 1.2 * (channel == "web")
        - 0.8 * (card_age_days > 730)
        + rng.normal(0.0, 0.4, size=rows)
    )
    # Shift the scores so that the expected share of frauds is FRAUD_RATE (bisection on the intercept).
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        if (1 / (1 + np.exp(-(risk + mid)))).mean() > FRAUD_RATE:
            high = mid
        else:
            low = mid
    probability = 1 / (1 + np.exp(-(risk + low)))
    is_fraud = (rng.random(rows) < probability).astype("int64")

    return pd.DataFrame(
        {
            "amount": amount,
            "hour": hour.astype("int64"),
            "merchant_risk": merchant_risk,
            "distance_km": distance_km,
            "card_age_days": card_age_days.astype("int64"),
            "channel": pd.array(channel.tolist(), dtype="str"),
            "is_foreign": is_foreign,
            TARGET: is_fraud,
        }
    )


def build_pipeline() -> Any:
    """A scikit-learn pipeline: scaled numbers, one-hot channel, the foreign flag, then logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = ColumnTransformer(
        [
            ("numeric", StandardScaler(), NUMERIC),
            ("channel", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
            ("flags", "passthrough", ["is_foreign"]),
        ]
    )
    return Pipeline([("features", features), ("model", LogisticRegression(max_iter=1000))])


def run_demo(
    service: ModelService | None = None,
    console: Console | None = None,
    *,
    rows: int = 5000,
    seed: int = 7,
    sample_dir: Path | None = None,
) -> ModelVersion:
    """Train, register and promote the demo ``fraud`` model, then score five test rows with it.

    Also writes ``transactions.csv`` (the test rows without the target) to ``sample_dir`` (default
    ``$SHIPYARD_HOME/demo``) for the ``shipyard predict`` command it prints. Returns the new version.
    """
    from rich.console import Console
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    import shipyard
    from shipyard.config import Settings

    service = service or shipyard.connect()
    console = console or Console(highlight=False)
    sample_dir = sample_dir if sample_dir is not None else Settings().resolved_home() / "demo"

    console.print(f"[bold]1.[/] Generating {rows:,} synthetic card transactions (seed {seed})")
    data = make_transactions(rows, seed)
    X = data.drop(columns=[TARGET])
    y = data[TARGET]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    console.print(f"   {len(X_train):,} rows to train on, {len(X_test):,} to test; {y.mean():.1%} of them are frauds")

    console.print("[bold]2.[/] Training scikit-learn: StandardScaler + OneHotEncoder -> LogisticRegression")
    pipeline = build_pipeline().fit(X_train, y_train)
    auc = float(roc_auc_score(y_test, pipeline.predict_proba(X_test)[:, 1]))
    console.print(f"   test AUC [bold]{auc:.3f}[/]")

    console.print(f"[bold]3.[/] Registering it as model '{MODEL_NAME}'")
    mv = service.register(
        pipeline,
        MODEL_NAME,
        X=X_train,
        y=y_train,
        metrics={"auc": auc},
        tags={"source": "shipyard demo", "data": f"synthetic, {rows} rows, seed {seed}"},
        description=f"Logistic regression on {len(X_train):,} synthetic transactions",
        model_description="Card-fraud classifier trained by 'shipyard demo' on synthetic data",
    )
    console.print(f"   registered [bold]{mv.ref}[/] sha256 {mv.sha256[:16]}...")
    move = service.set_alias(MODEL_NAME, ALIAS, mv.version)
    if move is not None:
        before = "none" if move.from_version is None else str(move.from_version)
        console.print(f"   {MODEL_NAME}@{ALIAS}: {before} -> {mv.version}")

    reference = f"{MODEL_NAME}@{ALIAS}"
    console.print(f"[bold]4.[/] Loading {reference} and scoring {SHOWN_ROWS} test transactions")
    model = service.load(reference)
    console.print(_scored_table(model, X_test, y_test))

    sample_dir.mkdir(parents=True, exist_ok=True)
    sample = sample_dir / "transactions.csv"
    X_test.to_csv(sample, index=False)
    scored = sample_dir / "scored.csv"
    console.print(f"   wrote {len(X_test):,} test transactions to {sample}", markup=False, soft_wrap=True)

    console.print("\n[bold]Next steps[/]")
    cli = _command_name()
    for command in (
        f"{cli} models show {MODEL_NAME}",
        f"{cli} predict {reference} --input {shlex.quote(str(sample))} --output {shlex.quote(str(scored))}",
        f"{cli} alias history {MODEL_NAME}",
        f"{cli} demo   # again: registers {MODEL_NAME}:{mv.version + 1} and moves {ALIAS} to it",
    ):
        console.print(f"  {command}", markup=False, soft_wrap=True)
    return mv


def _command_name() -> str:
    """``shipyard`` if that is on PATH, else the path of the installed command (e.g. ``.venv/bin/shipyard``)."""
    import shutil
    import sys

    installed = Path(sys.executable).parent / "shipyard"
    on_path = shutil.which("shipyard")
    if on_path and Path(on_path).resolve() == installed.resolve():
        return "shipyard"
    if installed.exists():
        try:
            return shlex.quote(str(installed.relative_to(Path.cwd())))
        except ValueError:
            return shlex.quote(str(installed))
    return "shipyard"


def _scored_table(model: Any, X_test: pd.DataFrame, y_test: pd.Series) -> Any:
    """A Rich table of a few test rows: the features, the true label, the prediction and the fraud probability."""
    from rich.table import Table

    proba = model.predict_proba(X_test)[:, list(model.classes).index(1)]
    # Show the three most suspicious transactions and two ordinary ones.
    order = proba.argsort()[::-1]
    picks = [*order[:3].tolist(), *order[len(order) // 2 : len(order) // 2 + SHOWN_ROWS - 3].tolist()]
    rows = X_test.iloc[picks]
    predictions = model.predict(rows)
    table = Table(title=f"{model.info.ref} on {len(rows)} test transactions", title_justify="left")
    for column in [*rows.columns, "actual", "predicted", "fraud probability"]:
        table.add_column(column, justify="left" if column == "channel" else "right")
    for i, (position, (_, row)) in enumerate(zip(picks, rows.iterrows(), strict=True)):
        table.add_row(
            f"{row['amount']:.2f}",
            str(row["hour"]),
            f"{row['merchant_risk']:.3f}",
            f"{row['distance_km']:.1f}",
            str(row["card_age_days"]),
            str(row["channel"]),
            "yes" if row["is_foreign"] else "no",
            str(int(y_test.iloc[position])),
            str(predictions[i]),
            f"{proba[position]:.1%}",
        )
    return table
