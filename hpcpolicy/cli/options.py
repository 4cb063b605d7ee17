"""argparse pieces several commands share: naming the site or deploy root, writer options."""

from __future__ import annotations

import argparse
from typing import Optional

from hpcpolicy.errors import UsageError

FORMAT_HELP = "text for a person (default), json for one JSON object on stdout"


def add_format(parser: argparse.ArgumentParser, *choices: str) -> None:
    parser.add_argument("--format", choices=choices or ("text", "json"), default="text",
                        help=FORMAT_HELP if not choices else None)


def add_site(parser: argparse.ArgumentParser) -> None:
    """SITE as the positional argument, `--site SITE` accepted as well."""
    parser.add_argument("site", nargs="?", metavar="SITE", help="the site file (site.toml)")
    parser.add_argument("--site", dest="site_option", metavar="SITE",
                        help="the site file, as an option (same as the positional SITE)")


def site_of(args: argparse.Namespace, command: str) -> str:
    """The one site file a command was given; exit 2 without one (there is no default site:
    a bare command must never act on production by accident) or with two different ones."""
    positional: Optional[str] = args.site
    option: Optional[str] = getattr(args, "site_option", None)
    if positional and option and positional != option:
        raise UsageError(f"{command}: SITE {positional} and --site {option} differ; give one")
    site = positional or option
    if not site:
        raise UsageError(f"{command}: give the site file (SITE or --site SITE)")
    return site


def add_root_options(parser: argparse.ArgumentParser) -> None:
    """--site / --deploy-root / --format, as every deploy-root command takes them."""
    parser.add_argument("--site", metavar="SITE", help="site.toml (gives deploy_root, approval)")
    parser.add_argument("--deploy-root", metavar="DIR", help="deploy root (overrides SITE's)")
    add_format(parser)


def add_writer_options(parser: argparse.ArgumentParser) -> None:
    """What every command that writes to a deploy root adds to the root options."""
    parser.add_argument("--non-interactive", action="store_true",
                        help="a scheduled run: under [site.approval] nobody is asked for a "
                             "password, the signature ([site] signing_key) is the accountable "
                             "act; without it, no terminal means no approval")
