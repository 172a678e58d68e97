"""One module per `lddpm` subcommand: `add_arguments(parser)` and `run(args) -> exit code`."""
