"""The one error tree of shipyard.

Every error carries the HTTP status a server should answer with and a message that says what went
wrong and how to fix it. The web framework never appears here: statuses are ``http.HTTPStatus``.

::

    ShipyardError
    ├── InvalidInput (ValueError)                 400
    │   ├── InvalidName                           400
    │   ├── InvalidReference                      400
    │   ├── SchemaError                           422
    │   ├── PredictionFailed                      422  (the model refused rows that fit the signature)
    │   └── UnsupportedModel                      400
    ├── NotFound (LookupError)                    404
    │   ├── ModelNotFound                         404
    │   ├── VersionNotFound                       404
    │   ├── AliasNotFound                         404
    │   └── UnknownRequestIds                     404  (feedback for predictions never recorded)
    ├── Conflict                                  409
    │   ├── NothingToRollBack                     409
    │   └── NotOnline                             409  (online learning asked of a model without it)
    ├── UntrustedArtifact                         403
    │   ├── IntegrityError                        403  (hash mismatch)
    │   └── UntrustedTypes                        403  (skops types outside the trusted list)
    ├── FlavorMismatch                            422
    ├── MissingDependency (ImportError)           500
    ├── StorageError                              503
    ├── NotServed                                 404  (registered, but not served here)
    ├── ModelNotReady                             503
    ├── PayloadTooLarge                           413
    ├── RequestTimeout                            504
    ├── UnsupportedMediaType                      415
    ├── Unauthorized                              401
    ├── Forbidden                                 403
    └── ServerUnavailable                         503  (client side: no answer from the server)
"""

from __future__ import annotations

from http import HTTPStatus


class ShipyardError(Exception):
    """Base of every error shipyard raises on purpose.

    >>> err = ShipyardError("something went wrong")
    >>> err.status, str(err)
    (<HTTPStatus.INTERNAL_SERVER_ERROR: 500>, 'something went wrong')
    """

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(ShipyardError, ValueError):
    """The caller sent something that cannot be used as it is."""

    status = HTTPStatus.BAD_REQUEST


class InvalidName(InvalidInput):
    """A model or alias name that does not match ``[a-z0-9][a-z0-9._-]{0,62}``."""

    def __init__(self, kind: str, name: str, reason: str) -> None:
        shown = name if len(name) <= 40 else name[:37] + "..."
        super().__init__(
            f"invalid {kind} name {shown!r}: {reason}; use 1-63 characters from a-z, 0-9, '.', '_' "
            "and '-', starting with a letter or digit"
        )
        self.kind = kind
        self.name = name


class InvalidReference(InvalidInput):
    """A model reference that is not ``name``, ``name:VERSION`` or ``name@ALIAS``."""


class SchemaError(InvalidInput):
    """Input data that does not fit a model's signature."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"input does not match the model signature: {shown}{more}")


class PredictionFailed(InvalidInput):
    """Rows that fit the signature but that the model itself could not score (e.g. an unknown category)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY


class UnsupportedModel(InvalidInput):
    """An object or file that no flavor knows how to store."""


class NotFound(ShipyardError, LookupError):
    """Something that was asked for does not exist."""

    status = HTTPStatus.NOT_FOUND


class ModelNotFound(NotFound):
    """No registered model has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"model {name!r} is not registered; run 'shipyard models list' to see the registered models"
        )
        self.name = name


class VersionNotFound(NotFound):
    """The model exists but not this version."""

    def __init__(self, name: str, version: int, latest: int | None = None) -> None:
        hint = f"the latest version is {latest}" if latest else "it has no versions yet"
        super().__init__(f"model {name!r} has no version {version}; {hint}")
        self.name = name
        self.version = version


class AliasNotFound(NotFound):
    """The model exists but has no such alias."""

    def __init__(self, name: str, alias: str, known: list[str] | None = None) -> None:
        hint = f"its aliases are: {', '.join(known)}" if known else "it has no aliases"
        super().__init__(
            f"model {name!r} has no alias {alias!r}; {hint}. "
            f"Set one with 'shipyard alias set {name} {alias} VERSION'"
        )
        self.name = name
        self.alias = alias


class Conflict(ShipyardError):
    """The request clashes with the current state."""

    status = HTTPStatus.CONFLICT


class NothingToRollBack(Conflict):
    """An alias has no earlier target to go back to."""

    def __init__(self, name: str, alias: str, current: int | None = None) -> None:
        where = f"it points to version {current}, where its history begins" if current else "its history is used up"
        super().__init__(
            f"alias {alias!r} of model {name!r} has no earlier version to go back to ({where}); "
            f"set it explicitly with 'shipyard alias set {name} {alias} VERSION'"
        )
        self.name = name
        self.alias = alias


class UntrustedArtifact(ShipyardError):
    """An artifact that shipyard refuses to load."""

    status = HTTPStatus.FORBIDDEN


class IntegrityError(UntrustedArtifact):
    """An artifact whose bytes no longer match the SHA-256 recorded at registration."""

    def __init__(self, name: str, version: int, expected: str, actual: str, *, detail: str | None = None) -> None:
        what = detail or f"expected sha256 {expected}, found {actual}"
        super().__init__(
            f"artifact of {name}:{version} was changed after registration and will not be loaded: "
            f"{what}. Register the model again from a trusted source"
        )
        self.name = name
        self.version = version
        self.expected = expected
        self.actual = actual


class UntrustedTypes(UntrustedArtifact):
    """A skops artifact that contains types outside the trusted list."""

    def __init__(self, types: list[str], where: str) -> None:
        flags = " ".join(f"--trust-type {name}" for name in types)
        super().__init__(
            f"{where} contains types that are not trusted: {', '.join(types)}. shipyard loads only reviewed "
            "types, because a stored model can reach functions that run code, read or write files. If you have "
            f"read these and know they are safe, trust them on purpose: trusted_types={types!r} "
            f"(CLI: {flags}; server: SHIPYARD_TRUSTED_TYPES={','.join(types)})"
        )
        self.types = types


class FlavorMismatch(ShipyardError):
    """An artifact that was written by a different flavor than the one asked to load it."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY


class MissingDependency(ShipyardError, ImportError):
    """An optional library that a flavor needs is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"the {package!r} package is needed for this model kind; install it with "
            f"pip install 'shipyard[{extra}]'"
        )
        self.package = package
        self.extra = extra


class StorageError(ShipyardError):
    """The registry database or artifact store could not be used."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class NotServed(NotFound):
    """The model exists in the registry but this server does not serve it."""

    def __init__(self, name: str, served: list[str]) -> None:
        shown = ", ".join(served) if served else "none"
        super().__init__(
            f"model {name!r} is not served here (served: {shown}); start the server with "
            f"'shipyard serve {name}' or give it a production alias"
        )
        self.name = name


class ModelNotReady(ShipyardError):
    """The model is still loading or warming up."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class PayloadTooLarge(ShipyardError):
    """A request body or row count above the server's limit."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class RequestTimeout(ShipyardError):
    """A prediction that did not finish within the per-request timeout."""

    status = HTTPStatus.GATEWAY_TIMEOUT


class UnsupportedMediaType(ShipyardError):
    """A request body in a media type the route does not read."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class Unauthorized(ShipyardError):
    """No API key, or one that is not valid."""

    status = HTTPStatus.UNAUTHORIZED


class Forbidden(ShipyardError):
    """A valid API key without the scope the route needs."""

    status = HTTPStatus.FORBIDDEN


class ServerUnavailable(ShipyardError):
    """The client could not reach the prediction server."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class UnknownRequestIds(NotFound):
    """Feedback for predictions that were never recorded (or were made by a model that is not online)."""

    def __init__(self, name: str, request_ids: list[str], hint: str | None = None) -> None:
        shown = ", ".join(map(repr, request_ids[:10]))
        more = f" (and {len(request_ids) - 10} more)" if len(request_ids) > 10 else ""
        hint = hint or (
            "send feedback with the request_id of a prediction of an online model, or send the features with the label"
        )
        super().__init__(f"model {name!r} made no recorded prediction with request id {shown}{more}; {hint}")
        self.name = name
        self.request_ids = request_ids


class NotOnline(Conflict):
    """A model that was not registered with ``online=True``, asked for online learning."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"model {name!r} does not learn online; register it with shipyard.register(..., online=True)"
        )
        self.name = name
