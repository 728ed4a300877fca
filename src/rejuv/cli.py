"""The `rejuv` command: one subcommand per recipe in `rejuv.recipes`.

A recipe module exposes `RECIPE` (its config class, its run function and how to summarise the result);
its options, YAML keys, types, defaults and help come from the config class (`rejuv.options`).
Precedence: defaults < `--config x.yaml` < options given on the command line. A command's module is
imported only when that command runs, so `rejuv apply --fusion-only` starts without torch or TRL.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from rejuv import __version__
from rejuv.errors import RejuvError
from rejuv.options import build_config, click_params

# name -> (recipe module, one line for `rejuv --help`, which imports no recipe)
COMMANDS = {
    "apply": ("rejuv.recipes.apply", "Fuse SFT with base, then reset the neurons that drive over-confident logits."),
    "diagnose": ("rejuv.recipes.diagnose", "Drift, entropy, top-1 mass, NLL and pass@k gap of checkpoints."),
    "plan": ("rejuv.planner.plan", "Which checkpoint to hand to RL, and which α/ρ, checked by short RL probes."),
    "sft": ("rejuv.recipes.sft", "Supervised fine-tuning on TRL (NLL, DFT or PEAR loss)."),
    "rl": ("rejuv.recipes.rl", "GRPO on TRL, logging gradient norm against update size per step."),
    "eval": ("rejuv.recipes.eval", "Sample K answers per problem; Pass@1 and pass@k."),
    "export-verl": ("rejuv.recipes.export_verl", "Parquet, reward and overrides for verl's GRPO trainer."),
    "demo": ("rejuv.lab.demo", "The lab: the paper's experiment in miniature, with a report."),
}


class _EchoHandler(logging.Handler):
    """rejuv's warnings as `warning: ...` on whatever stderr is current (click swaps it in tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {record.getMessage()}", err=True)


def show_warnings() -> None:
    from rejuv.errors import logger

    if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
        logger.addHandler(_EchoHandler())
        logger.propagate = False


def recipe_command(name: str, module_name: str) -> click.Command:
    recipe = importlib.import_module(module_name).RECIPE

    def callback(config_path: str | None, **given) -> None:
        try:
            cfg = build_config(recipe.config, given, config_path)
            if config_path:  # the YAML file is an input too: no output may hold it
                from rejuv.io.output import check_output_free
                from rejuv.options import declared_paths

                for _, _, out in declared_paths(cfg, "output"):
                    check_output_free(out, True, inputs=(config_path,))
            text = recipe.summary(cfg, recipe.run(cfg))
        except RejuvError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:  # a failure rejuv did not foresee: one line, the traceback on request
            if click.get_current_context().find_root().params.get("debug"):
                raise
            raise click.ClickException(f"{type(exc).__name__}: {exc} (rerun as `rejuv --debug {name} ...` for "
                                       "the traceback, and please report it)") from None
        if os.environ.get("RANK", "0") == "0":  # once, from the main process of a distributed launch
            click.echo(text)

    config_option = click.Option(["--config", "config_path"], type=click.Path(dir_okay=False, exists=True),
                                 help="YAML file with any of these options (command-line values win).")
    return click.Command(name, callback=callback, params=[config_option, *click_params(recipe.config)],
                         help=recipe.config.__doc__, context_settings={"max_content_width": 110})


class RecipeGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return recipe_command(name, COMMANDS[name][0]) if name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, line) for name, (_, line) in COMMANDS.items()])


@click.group(cls=RecipeGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="rejuv")
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected failure.")
def main(debug: bool) -> None:
    """Diagnose and rejuvenate over-trained SFT checkpoints before RL."""
    show_warnings()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
