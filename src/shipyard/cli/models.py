"""``shipyard models ...``: list, show and register models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shipyard.cli.common import get_service, parse_metrics, parse_pairs
from shipyard.cli.output import (
    JsonFlag,
    cell,
    console,
    joined,
    number,
    pairs,
    plain,
    print_json,
    say,
    size,
    table,
    when,
)
from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from rich.table import Table

    from shipyard.registry import ModelVersion

SHA_SHOWN = 12
FILES_SHOWN = 5
TOP_SHOWN = 3
VERSION_SUMMARY_LEAVES_OUT = ("profile", "seal", "input_example", "signature")
"""Fields of a version left out of JSON version lists (``models show --json`` gives them for one version)."""

app = typer.Typer(
    help="List, inspect and register models.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("list")
def list_models(as_json: JsonFlag = False) -> None:
    """List every registered model with its latest version and aliases."""
    registered = get_service().list_models()
    if as_json:
        print_json(registered)
        return
    out = console()
    if not registered:
        say("No models registered yet. Try 'shipyard demo', or 'shipyard models register FILE --name NAME'.")
        return
    result = table("Name", "Latest", "Aliases", "Updated")
    for model in registered:
        result.add_row(
            cell(model.name),
            cell(model.latest_version),
            cell(pairs(model.aliases)),
            cell(when(model.updated_at)),
        )
    out.print(result)


def lineage_text(lineage: dict[str, Any]) -> str:
    """A version's lineage in one readable cell: source, fingerprint prefix, files consumed, watermark.

    >>> lineage_text({"source": "data/", "fingerprint": "ab" * 32, "files": ["data/a.csv", "data/b.csv"]})
    'source=data/, fingerprint=abababababab, files (2): data/a.csv, data/b.csv'
    >>> lineage_text({"watermark": {"column": "ts", "max": "2024-05-01"}})
    'watermark ts=2024-05-01'
    >>> lineage_text({})
    ''
    """
    parts: list[str] = []
    for key, value in lineage.items():
        if key == "fingerprint" and isinstance(value, str):
            parts.append(f"fingerprint={value[:SHA_SHOWN]}")
        elif key == "watermark" and isinstance(value, dict):
            parts.append(f"watermark {value.get('column')}={value.get('max')}")
        elif isinstance(value, list):
            shown = ", ".join(str(v) for v in value[:FILES_SHOWN])
            more = f", ... ({len(value) - FILES_SHOWN} more)" if len(value) > FILES_SHOWN else ""
            parts.append(f"{key} ({len(value)}): {shown}{more}")
        elif isinstance(value, dict):
            parts.append(f"{key}: {pairs(value)}")
        elif value is not None:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def versions_table(versions: list[ModelVersion], title: str | None = None) -> Table:
    """A table of versions: parent, flavor, when, who, hash prefix, size, metrics and aliases."""
    result = table(
        "Version", "Parent", "Flavor", "Created", "Creator", "SHA-256", "Size", "Metrics", "Aliases", title=title
    )
    for mv in versions:
        result.add_row(
            cell(mv.version),
            cell(mv.parent_version),
            cell(mv.flavor),
            cell(when(mv.created_at)),
            cell(mv.creator),
            cell(mv.sha256[:SHA_SHOWN]),
            cell(size(mv.size_bytes)),
            cell(pairs(mv.metrics)),
            cell(joined(mv.aliases)),
        )
    return result


def signature_tables(mv: ModelVersion) -> list[Table | str]:
    """The input (and output) columns a version's signature declares, or a note that it has none."""
    signature: dict[str, Any] | None = mv.signature
    if not signature:
        return [f"{mv.ref} has no signature: its input is not checked. Register it with an example to add one."]
    shown: list[Table | str] = []
    tensor = signature.get("tensor")
    if tensor:
        shape = ", ".join("N" if d is None else str(d) for d in tensor.get("shape", []))
        shown.append(f"Signature of {mv.ref}: array of {tensor.get('dtype')} with shape ({shape})")
    else:
        inputs = table("Column", "Type", title=f"Inputs of {mv.ref}")
        for column in signature.get("inputs", []):
            inputs.add_row(cell(column.get("name")), cell(column.get("dtype")))
        shown.append(inputs)
    outputs = signature.get("outputs") or []
    if outputs:
        result = table("Column", "Type", title=f"Outputs of {mv.ref}")
        for column in outputs:
            result.add_row(cell(column.get("name")), cell(column.get("dtype")))
        shown.append(result)
    return shown


def profile_table(mv: ModelVersion) -> Table | str:
    """A version's reference profile: a row per feature, then the prediction and each class probability."""
    profile: dict[str, Any] | None = mv.profile
    if not profile:
        return (
            f"{mv.ref} has no reference profile: register it with training data (X=... or --example) to monitor drift."
        )
    rows = profile.get("rows", 0)
    result = table(
        "Feature",
        "Kind",
        "Mean",
        "Std",
        "Min",
        "Max",
        "Top categories",
        "Missing",
        title=f"Reference profile of {mv.ref} ({rows:,} rows)",
    )
    entries: list[tuple[str, dict[str, Any]]] = list(profile.get("features", {}).items())
    if "prediction" in profile:
        entries.append(("(prediction)", profile["prediction"]))
    entries.extend((f"(proba {label})", entry) for label, entry in profile.get("probabilities", {}).items())
    for feature, entry in entries:
        missing = f"{entry.get('missing_rate', 0.0):.1%}"
        if entry.get("kind") == "categorical":
            result.add_row(
                cell(feature),
                cell("categorical"),
                cell(""),
                cell(""),
                cell(""),
                cell(""),
                cell(top_categories(entry)),
                cell(missing),
            )
        else:
            moments = [entry.get(k) for k in ("mean", "std", "min", "max")]
            result.add_row(
                cell(feature),
                cell("numeric"),
                *[cell("" if v is None else number(v)) for v in moments],
                cell(""),
                cell(missing),
            )
    return result


def top_categories(entry: dict[str, Any], shown: int = TOP_SHOWN) -> str:
    """The most frequent categories of a profile entry with their shares, then the rest.

    >>> top_categories({"frequencies": {"FR": 0.5, "DE": 0.3, "IT": 0.15, "ES": 0.05}, "other": 0.0}, shown=2)
    'FR 50.0%, DE 30.0%, 2 more 20.0%'
    """
    frequencies: dict[str, float] = entry.get("frequencies", {})
    top = list(frequencies.items())[:shown]
    rest_count = len(frequencies) - len(top)
    rest = sum(list(frequencies.values())[shown:]) + float(entry.get("other", 0.0))
    parts = [f"{key} {share:.1%}" for key, share in top]
    if rest_count or rest > 0:
        parts.append(f"{rest_count} more {rest:.1%}" if rest_count else f"other {rest:.1%}")
    return ", ".join(parts)


@app.command("show")
def show(
    name: Annotated[
        str, typer.Argument(metavar="NAME[:V]", help="Model name, e.g. fraud, or a version: fraud:3, fraud@staging.")
    ],
    version: Annotated[
        int | None,
        typer.Option(
            "--version", "-v", min=1, metavar="N", help="Show the signature of this version (default: the newest)."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show a model: its details, every version, and the signature and reference profile of the newest (or the
    version named)."""
    from shipyard.types import ModelRef

    service = get_service()
    ref = ModelRef.parse(name)
    model = service.get_model(ref.name)
    versions = service.list_versions(ref.name)
    chosen: ModelVersion | None = versions[0] if versions else None
    if version is not None:
        chosen = service.resolve(ModelRef(ref.name, version=version))
    elif ref.version is not None or ref.alias is not None:
        chosen = service.resolve(ref)

    if as_json:
        print_json(
            {
                "model": plain(model),
                "versions": [plain(v, leave_out=VERSION_SUMMARY_LEAVES_OUT) for v in versions],
                "version": plain(chosen, leave_out=("seal",)) if chosen is not None else None,
            }
        )
        return
    out = console()
    details = table("Field", "Value", title=f"Model {model.name}")
    details.add_row(cell("description"), cell(model.description))
    details.add_row(cell("latest version"), cell(model.latest_version))
    details.add_row(cell("aliases"), cell(pairs(model.aliases)))
    details.add_row(cell("tags"), cell(pairs(model.tags)))
    details.add_row(cell("created"), cell(when(model.created_at)))
    details.add_row(cell("updated"), cell(when(model.updated_at)))
    if chosen is not None:
        details.add_row(cell(f"v{chosen.version} description"), cell(chosen.description))
        details.add_row(cell(f"v{chosen.version} tags"), cell(pairs(chosen.tags)))
        details.add_row(cell(f"v{chosen.version} sha256"), cell(chosen.sha256))
        details.add_row(cell(f"v{chosen.version} parent"), cell(chosen.parent_ref))
        details.add_row(cell(f"v{chosen.version} lineage"), cell(lineage_text(chosen.lineage)))
    out.print(details)
    out.print(versions_table(versions, title="Versions"))
    if chosen is not None:
        for part in [*signature_tables(chosen), profile_table(chosen)]:
            if isinstance(part, str):
                say(part)
            else:
                out.print(part)


@app.command("versions")
def versions(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Model name, e.g. fraud.")], as_json: JsonFlag = False
) -> None:
    """List every version of a model, newest first."""
    found = get_service().list_versions(name)
    if as_json:
        print_json([plain(v, leave_out=VERSION_SUMMARY_LEAVES_OUT) for v in found])
        return
    console().print(versions_table(found, title=f"Versions of {name}"))


@app.command("register")
def register(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="Model file: .skops, .onnx, .ubj (XGBoost), .lgb (LightGBM); .pkl/.joblib with --trust.",
        ),
    ],
    name: Annotated[str, typer.Option("--name", "-n", metavar="NAME", help="Model name: a-z, 0-9, '.', '_', '-'.")],
    example: Annotated[
        Path,
        typer.Option(
            "--example",
            "-e",
            metavar="DATA",
            help="CSV or Parquet of input rows; gives the signature every prediction is checked against.",
        ),
    ],
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            metavar="COLUMN",
            help="Column of --example holding the target: dropped from X, used as y.",
        ),
    ] = None,
    trust: Annotated[
        bool, typer.Option("--trust", help="Accept a pickle/joblib file (it runs code when read: only your own files).")
    ] = False,
    trust_type: Annotated[
        list[str] | None,
        typer.Option(
            "--trust-type",
            metavar="TYPE",
            help="Extra type the skops file may contain, e.g. mylib.Scaler (repeatable).",
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", metavar="KEY=NUMBER", help="KEY=NUMBER recorded with the version (repeatable)."),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", metavar="KEY=VALUE", help="KEY=VALUE recorded with the version (repeatable)."),
    ] = None,
    description: Annotated[
        str, typer.Option("--description", "-d", metavar="DESCRIPTION", help="What this version is.")
    ] = "",
) -> None:
    """Register a model file as the next version of NAME, with the signature of --example."""
    from shipyard.cli.files import read_table

    metrics = parse_metrics(metric or [])
    tags = parse_pairs(tag or [], "--tag")
    if not file.exists():
        raise InvalidInput(f"model file {file} does not exist")
    if file.is_dir():
        raise InvalidInput(f"model file {file} is a folder; give the saved model file")
    frame = read_table(example, "example file")
    y = None
    if target is not None:
        if target not in frame.columns:
            raise InvalidInput(
                f"--target {target!r} is not a column of {example.name}; its columns are: "
                f"{', '.join(map(str, frame.columns))}"
            )
        y = frame[target]
        frame = frame.drop(columns=[target])
    if frame.shape[1] == 0:
        raise InvalidInput(f"{example.name} has no input columns left to build a signature from")

    mv = get_service().register_file(
        file,
        name,
        example=frame,
        trust=trust,
        trusted_types=tuple(trust_type or ()),
        y=y,
        metrics=metrics,
        tags=tags,
        description=description,
    )
    say(f"Registered {mv.ref} ({mv.flavor}, {size(mv.size_bytes)}) sha256 {mv.sha256}")
    say(f"Next: shipyard alias set {mv.name} production {mv.version}")
