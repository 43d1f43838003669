"""Run configuration files for ``sdeflow train``: TOML whose keys are the command's flags.

``--config run.toml`` reads flat ``key = value`` pairs, a key being a flag's name without the
dashes (``batch-size`` or ``batch_size``); `config_argv` turns them into command-line
arguments placed before the user's own, so flags given on the command line win. A training
run writes its effective flags to ``OUT/config.toml`` (`write_config`), so
``sdeflow train --config OUT/config.toml --out OTHER`` repeats it.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Union

from .errors import GenerativeError

__all__ = ["CONFIG_NAME", "read_config", "config_argv", "write_config", "ConfigError"]

CONFIG_NAME = "config.toml"


class ConfigError(GenerativeError, ValueError):
    """A config file that cannot be read or holds a key or value no flag takes."""


def _toml_loads(text: str) -> Dict[str, Any]:
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as err:
            raise ConfigError("reading --config needs Python >= 3.11 (tomllib) or the tomli "
                              "package") from err
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"not valid TOML ({err})") from err


def read_config(path: Union[str, Path]) -> Dict[str, Any]:
    """The flat table of a TOML file (`ConfigError` if missing, invalid or nested)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {str(path)!r} ({err})") from err
    table = _toml_loads(text)
    nested = [k for k, v in table.items() if isinstance(v, (dict, list))]
    if nested:
        raise ConfigError(f"{str(path)!r}: {nested[0]!r} is a table or array; a config holds "
                          "flat `flag = value` pairs")
    return table


def _flags(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    """dest -> action of every optional argument that a config may set."""
    return {a.dest: a for a in parser._actions
            if a.option_strings and a.dest not in ("help", "config")}


def config_argv(table: Mapping[str, Any], parser: argparse.ArgumentParser,
                where: str) -> List[str]:
    """Command-line arguments equivalent to ``table`` for ``parser`` (a boolean flag given
    ``true`` adds the flag; ``false`` adds nothing). Unknown keys and values of the wrong
    type raise `ConfigError` naming the key; ``parser`` checks the values themselves."""
    flags = _flags(parser)
    argv: List[str] = []
    for key, value in table.items():
        dest = key.replace("-", "_")
        action = flags.get(dest)
        if action is None:
            known = ", ".join(sorted(a.option_strings[0][2:] for a in flags.values()))
            raise ConfigError(f"{where}: unknown key {key!r}; the keys are the flags of "
                              f"this command: {known}")
        flag = action.option_strings[0]
        if action.nargs == 0:  # store_true
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {key!r} is a switch: write {key} = true or false; "
                                  f"got {value!r}")
            if value:
                argv.append(flag)
        elif isinstance(value, bool):
            raise ConfigError(f"{where}: {key!r} takes a value (as {flag} does); got {value!r}")
        else:
            argv += [flag, str(value)]
    return argv


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value
                                                         else ("inf" if value > 0 else "-inf"))
    return json.dumps(str(value))  # a TOML basic string


def write_config(path: Union[str, Path], args: argparse.Namespace,
                 parser: argparse.ArgumentParser, skip: Iterable[str] = ()) -> Path:
    """Write the flags of ``args`` (those ``parser`` has, except ``skip`` and unset ones) as
    TOML to ``path``, atomically; returns the path."""
    path = Path(path)
    skip = set(skip)
    lines = ["# sdeflow train flags of this run; repeat it with",
             "#   sdeflow train --config THIS_FILE --out NEW_DIR", ""]
    for dest, action in _flags(parser).items():
        value = getattr(args, dest, None)
        if dest in skip or value is None or (action.nargs == 0 and value is False):
            continue
        lines.append(f"{action.option_strings[0][2:]} = {_toml_value(value)}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path
