"""Flag conventions shared by the subcommands, so one flag is spelled and parsed the same everywhere."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any


class ListArg(argparse.Action):
    """A list flag: space-separated values (``--engines torch openvino``); each value may also be
    comma-separated (``--engines torch,openvino``, the older spelling of some commands)."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        item_type: Callable[[str], Any] = str,
        item_choices: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("nargs", "+")
        if item_choices and "metavar" not in kwargs:
            kwargs["metavar"] = "{" + ",".join(map(str, item_choices)) + "}"
        super().__init__(option_strings, dest, **kwargs)
        self.item_type, self.item_choices = item_type, item_choices

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        out = []
        for text in (x for v in values for x in str(v).split(",") if x):
            try:
                item = self.item_type(text)
            except ValueError:
                parser.error(f"{option_string}: invalid value {text!r}")
            if self.item_choices and item not in self.item_choices:
                parser.error(f"{option_string}: {text!r} is not one of {', '.join(map(str, self.item_choices))}")
            out.append(item)
        setattr(namespace, self.dest, out)


def add_topk(parser: argparse.ArgumentParser, help: str, dest: str = "topk") -> None:
    """``--topk`` (PaddleClas's spelling and ours; ``--top-k`` kept as an alias)."""
    parser.add_argument("--topk", "--top-k", dest=dest, type=int, default=5, help=help)
