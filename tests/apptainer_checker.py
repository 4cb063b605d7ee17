"""Test helper: read an apptainer.conf / singularity.conf the way Apptainer's Go parser does.

A restatement (not a copy) of `pkg/util/apptainerconf/parser.go` (`GetDirectives`, `GetConfig`),
identical in SingularityCE's `pkg/util/singularityconf/parser.go`:

* a directive is a match of `(?m)^\\s*([a-zA-Z _-]+)[[:blank:]]*=[[:blank:]]*(.*)$`; key and value
  are TrimSpace'd; a match with an empty value is dropped; anything else is silently ignored
  (comments, lines without `=`, unknown keys);
* values accumulate per key in file order; every value is split on `,`;
* a missing key takes its default, except list keys, which stay empty once a file is parsed;
* bool: `value[0]` must be exactly `yes` or `no`; enum string: `value[0]` must be authorised
  (an empty `value[0]` passes); uint: `strconv.ParseUint(value[0], 0, 64)`; list: every element
  TrimSpace'd. So for scalars the first element of the FIRST occurrence wins and later
  occurrences are never validated.

`check_file` adds what Apptainer does not report but a site must know: unknown or dropped keys,
duplicate scalars, comma-split scalars, `#` in values (no inline comments), lines the parser
ignores, and whether EVERY release from the declared one to the newest known parses the file.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Union

from hpcpolicy.policy import directives as d

Value = Union[bool, int, str, List[str]]
Directives = Dict[str, List[str]]

# Go: \s is [\t\n\f\r ], [[:blank:]] is [ \t], `.` excludes only \n.
_PARSER_RE = re.compile(r"^[\t\n\f\r ]*([a-zA-Z _-]+)[ \t]*=[ \t]*(.*)$", re.M)
_GO_UINT = re.compile(
    r"0[xX](_?[0-9a-fA-F])+|0[bB](_?[01])+|0[oO](_?[0-7])+|0(_?[0-7])+|[1-9](_?[0-9])*|0"
)


class ConfigError(Exception):
    """What makes Apptainer refuse the file (every command fails)."""


def get_directives(text: str) -> Directives:
    """`GetDirectives`: key -> raw values in file order (empty values dropped)."""
    out: Directives = {}
    for match in _PARSER_RE.finditer(text):
        key = match.group(1).strip()
        value = match.group(2).strip()
        if value:
            out.setdefault(key, []).append(value)
    return out


def parse_go_uint(text: str) -> int:
    """`strconv.ParseUint(text, 0, 64)`: base prefixes, leading-0 octal, `_` separators."""
    if not _GO_UINT.fullmatch(text):
        raise ConfigError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    digits = text.replace("_", "")
    if len(digits) > 1 and digits[0] == "0" and digits[1] not in "xXbBoO":
        value = int(digits[1:], 8)
    else:
        value = int(digits, 0)
    if value >= 2**64:
        raise ConfigError(f'strconv.ParseUint: parsing "{text}": value out of range')
    return value


def get_config(
    directives: Optional[Directives], dialect: str, version: d.Version
) -> Dict[str, Value]:
    """`GetConfig` with the directive table of one release; ConfigError when it would fail."""
    config: Dict[str, Value] = {}
    for name, span in d.directives_at(dialect, version):
        raw = (directives or {}).get(name, [])
        values: List[str] = []
        for item in raw:
            values.extend(item.split(","))
        if not raw and span.default and (span.kind != "list" or directives is None):
            values = span.default.split(",")
        config[name] = _typed(name, span, values)
    return config


def _typed(name: str, span: d.Span, values: List[str]) -> Value:
    if span.kind == "bool":
        if values[0] not in ("yes", "no"):
            raise ConfigError(f'value authorized for directive "{name}" are [yes no]')
        return values[0] == "yes"
    if span.kind == "uint":
        return parse_go_uint(values[0])
    if span.kind in ("enum", "string"):
        first = values[0] if values else ""
        if span.kind == "enum" and first != "" and first not in span.allowed:
            raise ConfigError(
                f"value authorized for directive '{name}' are [{' '.join(span.allowed)}]"
            )
        return first
    return [v.strip() for v in values]


def parse(text: str, dialect: str, version: str) -> Dict[str, Value]:
    """The configuration the declared release builds from `text` (ConfigError if it fails)."""
    return get_config(get_directives(text), dialect, d.parse_version(dialect, version))


def check_file(text: str, dialect: str, version: str) -> List[str]:
    """Every problem of `text` for nodes running `version` or any later known release."""
    ver = d.parse_version(dialect, version)
    product = d.PRODUCT[dialect]
    found = get_directives(text)
    problems = _line_problems(text)
    for release in d.RELEASES[dialect]:
        if release >= ver:
            try:
                get_config(found, dialect, release)
            except ConfigError as err:
                problems.append(f"{product} {d.vtext(release)} refuses the file: {err}")
    for key, raw in found.items():
        problems.extend(_key_problems(dialect, key, raw, ver))
    return problems


def _line_problems(text: str) -> List[str]:
    problems = []
    if "\r" in text:
        problems.append("CR characters (the file must use LF line endings)")
    if text and not text.endswith("\n"):
        problems.append("no newline at the end of the file")
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not _PARSER_RE.fullmatch(line):
            problems.append(f"line {number} is ignored by the parser: {line!r}")
    return problems


def _key_problems(dialect: str, key: str, raw: List[str], ver: d.Version) -> List[str]:
    product = d.PRODUCT[dialect]
    span = d.span_at(dialect, key, ver)
    if span is None:
        return [f"{key!r} is unknown to {product} {d.vtext(ver)} (silently ignored)"]
    problems = []
    for later in d.later_spans(dialect, key, ver):
        if later.kind is None:
            problems.append(f"{key!r} is dropped by {product} {d.vtext(later.since)}")
    if span.kind != "list" and len(raw) > 1:
        problems.append(f"{key!r} appears {len(raw)} times (only the first counts)")
    for value in raw:
        if span.kind != "list" and "," in value:
            problems.append(f"{key!r} = {value!r}: only the part before ',' counts")
        if re.search(r"\s#", value):
            problems.append(f"{key!r} = {value!r}: looks like an inline comment, is not one")
    return problems
