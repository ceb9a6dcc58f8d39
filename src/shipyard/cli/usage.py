"""The root command's group class: one-line usage errors and help without ``<str>`` placeholders.

:class:`ShipyardGroup` is the ``cls`` of the root Typer app. When Typer builds the click command
tree, the root group is made last, so its constructor sees every command and gives each option a
metavar (``--since DURATION``, ``--config PATH``, flags none) and hides the Python type of
arguments. Its ``main`` turns Click's usage errors (unknown option, missing argument, bad value),
which Typer prints as a multi-line box, into one ``error: ...`` line on stderr with exit code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from typer.core import TyperArgument, TyperGroup, TyperOption

from shipyard.cli.output import print_error

__all__ = ["ShipyardGroup", "polish_help", "usage_error_line", "walk"]

# Typer >= 0.22 carries its own copy of Click, older versions use the installed one: Click's
# exceptions are recognised by class name (as Typer itself does), which holds for both.
USAGE_ERROR = "UsageError"
CLICK_EXCEPTION = "ClickException"
NO_ARGS_IS_HELP = "NoArgsIsHelpError"
ABORT = "Abort"


def _kinds(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__ if cls.__module__.split(".")[0] in ("click", "typer")}


#: Metavars by option name, for options that do not give their own.
METAVARS: dict[str, str] = {
    "since": "DURATION",
    "window": "DURATION",
    "config": "PATH",
    "output": "PATH",
    "out": "PATH",
    "alias": "ALIAS",
    "tag": "KEY=VALUE",
    "param": "KEY=VALUE",
    "metric": "KEY=NUMBER",
    "version": "N",
    "versions": "N,N",
    "last": "N",
    "limit": "N",
    "port": "PORT",
    "host": "HOST",
    "user": "USER",
    "scope": "SCOPE",
    "model": "NAME",
    "name": "NAME",
}


class _UntypedArgument(TyperArgument):
    """An argument whose help row shows its name only (``NAME``), not Typer's ``<str>``."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every Click command under ``command`` (itself first) with its path of names from the root."""
    yield path, command
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from walk(sub, (*path, name))


def _kind(option: TyperOption) -> tuple[str, list[Any]]:
    """The option's value type as ``int``/``float``/``path``/``choice``/``str``, and its choices."""
    desc = getattr(option, "type_descriptor", None)
    if desc is not None:  # Typer >= 0.22
        if desc.is_choice:
            return "choice", list(desc.choices or ())
        if desc.is_path or desc.is_file:
            return "path", []
        bare = str(option.bare_type()).removeprefix("list[").removesuffix("]")
        return bare, []
    click_type = getattr(option, "type", None)  # older Typer: a Click parameter type
    choices = list(getattr(click_type, "choices", None) or ())
    if choices:
        return "choice", choices
    name = str(getattr(click_type, "name", "text"))
    return {"integer": "int", "integer range": "int", "float range": "float", "filename": "path"}.get(name, name), []


def _metavar(option: TyperOption) -> str:
    name = (option.name or "value").lower()
    if name in METAVARS:
        return METAVARS[name]
    kind, choices = _kind(option)
    if kind == "choice":
        return "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
    return {"path": "PATH", "file": "PATH", "int": "N", "float": "NUMBER"}.get(kind, name.upper())


def _polish_params(params: Iterable[Any]) -> None:
    for param in params:
        if isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = "" if param.is_flag or param.count else _metavar(param)
        elif type(param) is TyperArgument:
            param.__class__ = _UntypedArgument


def _help_option(command: Any, parent: Any, name: str) -> tuple[Any, Any]:
    """The context ``command`` gets under ``parent`` (help option names are inherited) and its help option."""
    ctx = command.context_class(command, parent=parent, info_name=name, **command.context_settings)
    return ctx, command.get_help_option(ctx)  # Click caches the option on the command


def polish_help(root: Any, name: str = "shipyard") -> None:
    """Give every option under the Click command ``root`` a metavar (flags none); show arguments by name only."""

    def polish(command: Any, parent: Any, info_name: str) -> None:
        ctx, help_option = _help_option(command, parent, info_name)
        params = [*command.params, *([help_option] if help_option is not None else [])]
        _polish_params(params)
        for sub_name, sub in (getattr(command, "commands", None) or {}).items():
            polish(sub, ctx, sub_name)

    polish(root, None, name)


def usage_error_line(exc: Any) -> str:
    """``<message> (try 'shipyard X --help')`` for a Click usage error, on one line."""
    message = " ".join(str(exc.format_message()).split())
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return message
    help_option = ctx.command.get_help_option(ctx)
    if help_option is not None:
        flag = max(help_option.opts, key=len)  # --help rather than -h
        message = f"{message.rstrip('.')} (try '{ctx.command_path} {flag}')"
    return message


class ShipyardGroup(TyperGroup):
    """Typer's group with polished help (see :func:`polish_help`) and one-line usage errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        polish_help(self)

    def get_params(self, ctx: Any) -> Any:
        """The root's parameters, including the completion options Typer adds after construction."""
        params = super().get_params(ctx)
        _polish_params(params)
        return params

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; in standalone mode, Click's errors print as one ``error:`` line."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except Exception as exc:
            kinds = _kinds(exc)
            if NO_ARGS_IS_HELP in kinds:
                text = str(exc.format_message())  # type: ignore[attr-defined]  # Rich help printed itself already
                if text.strip():
                    sys.stdout.write(text.rstrip("\n") + "\n")
                sys.exit(2)
            if USAGE_ERROR in kinds:
                print_error(usage_error_line(exc))
                sys.exit(int(getattr(exc, "exit_code", 2)))
            if CLICK_EXCEPTION in kinds:
                print_error(str(exc.format_message()))  # type: ignore[attr-defined]
                sys.exit(int(getattr(exc, "exit_code", 1)))
            if ABORT in kinds:
                print_error("aborted")
                sys.exit(1)
            raise
        sys.exit(result if isinstance(result, int) and not isinstance(result, bool) else 0)
