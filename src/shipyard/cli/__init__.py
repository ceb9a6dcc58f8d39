"""The ``shipyard`` command line (placeholder until the CLI lands)."""


def main() -> None:
    """Entry point of the ``shipyard`` command."""
