"""``cosmic-tl`` subcommands of the experiments."""


def add_experiment_commands(sub, add_run_options, config_from_args) -> None:
    """Register the experiment subcommands on the ``cosmic-tl`` parser."""
