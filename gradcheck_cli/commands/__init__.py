"""The command line's commands, one module each (run, perturb, sweep, models and schema).

Each module holds a click command that parses its options and calls a core function; the group
in gradcheck_cli/cli.py dispatches. Modules import click only at the top, so that `--help`
loads neither numpy nor rich.
"""
