"""One module per `lddpm` subcommand: `add_arguments(parser)` and `run(args) -> exit code`;
`sampling` is the argument group (and loader) that upscale, evaluate, serve and export share."""
