"""Docker image references and policy scopes, exactly as containers/image reads them.

Podman, Buildah and Skopeo parse references with containers/image's copy of
docker/distribution's `reference` package (`ParseNormalizedNamed`) and look policy.json scopes
up with `docker/policyconfiguration/naming.go`. The audit must reach the same verdict as those
tools, so this module restates those rules rather than inventing friendlier ones:

* `ubuntu` is `docker.io/library/ubuntu:latest`; `user/img` is `docker.io/user/img:latest`; the
  first component is a host only if it contains `.` or `:` or is `localhost`;
  `index.docker.io` becomes `docker.io`; the repository must be lowercase; a missing tag is
  `latest`; a reference with both a tag and a digest keeps the digest only (what Docker's
  `ParseDockerRef` and Podman do; Skopeo refuses such references outright).
* A scope is matched as an exact string against the reference's identity (`name:tag` or
  `name@digest`), then its repository and each parent namespace down to `host[:port]`, then
  `*.` wildcards of the host with the port stripped (`*.b.c`, then `*.c`).

Regular expressions are written so Python's backtracking engine stays linear on hostile input
(Go's RE2 has no such worry): the separator `-*` of the Go grammar is `-+` here, which accepts
the same language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO = "library"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_NAME_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH = rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE_RE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH}))"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_PATH_RE = re.compile(_PATH)
_NAME_COMPONENT_RE = re.compile(_NAME_COMPONENT)
_TAG_RE = re.compile(_TAG)
_DIGEST_RE = re.compile(_DIGEST)
_LOWER_DOMAIN_COMPONENT_RE = re.compile(r"[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9]")
_IPV6_RE = re.compile(_IPV6)
_IPV4_RE = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}")
_BAD_CHAR_RE = re.compile(r"[\s\x00-\x1f\x7f]")

# go-digest knows these algorithms; the hex part must be lowercase and of this length.
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True)
class Reference:
    """A normalised docker reference: `domain/path` plus a tag or a digest (never both)."""

    domain: str
    path: str
    tag: Optional[str] = None
    digest: Optional[str] = None

    @property
    def name(self) -> str:
        """The repository, `domain/path`."""
        return f"{self.domain}/{self.path}"

    @property
    def identity(self) -> str:
        """The most specific scope that can match: `name:tag` or `name@digest`."""
        if self.digest is not None:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag or DEFAULT_TAG}"

    def namespaces(self) -> List[str]:
        """Less specific scopes, in the order containers/image tries them (`namespaces_of`)."""
        return namespaces_of(self.name)

    def scopes(self) -> List[str]:
        """Every scope that matches this reference, most specific first."""
        return [self.identity] + self.namespaces()

    def __str__(self) -> str:
        return self.identity


def namespaces_of(name: str) -> List[str]:
    """`name`, each parent namespace down to `host[:port]`, then wildcards of the bare host.

    containers/image's `DockerReferenceNamespaces`: the port is stripped before wildcards, so
    an IPv4 host yields `*.0.0.1`-style wildcards too, and an IPv6 host yields none.
    """
    out: List[str] = []
    while True:
        out.append(name)
        slash = name.rfind("/")
        if slash == -1:
            break
        name = name[:slash]
    colon = name.find(":")
    if colon != -1:
        name = name[:colon]
    while True:
        dot = name.find(".")
        if dot == -1:
            break
        name = name[dot + 1 :]
        out.append("*." + name)
    return out


def _split_docker_domain(name: str) -> Tuple[str, str]:
    """Docker's `splitDockerDomain`: is the first component a host, or a docker.io path?"""
    slash = name.find("/")
    first = name[:slash]
    if slash == -1 or (not any(c in first for c in ".:") and first != "localhost"):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[slash + 1 :]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = f"{OFFICIAL_REPO}/{remainder}"
    return domain, remainder


def _digest_problem(digest: str) -> Optional[str]:
    """go-digest's validation: a known algorithm and lowercase hex of its exact length."""
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_LENGTHS.get(algorithm)
    if length is None:
        return f"unsupported digest algorithm {algorithm!r} (sha256, sha384 or sha512)"
    if len(encoded) != length or not re.fullmatch(r"[a-f0-9]+", encoded):
        return f"invalid {algorithm} digest: needs {length} lowercase hex digits"
    return None


def parse(ref: str) -> Reference:
    """Parse and normalise a reference as Podman does; `ValueError` says what is wrong.

    An optional `docker://` transport prefix is accepted; any other transport is not a
    registry reference.
    """
    if not isinstance(ref, str) or not ref:
        raise ValueError("empty image reference")
    if _BAD_CHAR_RE.search(ref):
        raise ValueError(f"invalid image reference {ref!r}: whitespace or control character")
    if ref.startswith("docker://"):
        ref = ref[len("docker://") :]
    elif "://" in ref:
        raise ValueError(
            f"invalid image reference {ref!r}: a URL scheme is not part of a reference"
        )
    if _IDENTIFIER_RE.fullmatch(ref):
        raise ValueError(
            f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_docker_domain(ref)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise ValueError(f"invalid reference {ref!r}: repository name must be lowercase")
    return _parse_qualified(f"{domain}/{remainder}", ref)


def _parse_qualified(full: str, original: str) -> Reference:
    """Docker's `reference.Parse` on an already domain-qualified string."""
    m = _REFERENCE_RE.fullmatch(full)
    if m is None or m.group("domain") is None:
        if _REFERENCE_RE.fullmatch(full.lower()):
            raise ValueError(f"invalid reference {original!r}: repository name must be lowercase")
        raise ValueError(f"invalid reference format: {original!r}")
    if len(m.group("name")) > NAME_TOTAL_LENGTH_MAX:
        raise ValueError(
            f"invalid reference {original!r}: repository name must not be more than "
            f"{NAME_TOTAL_LENGTH_MAX} characters"
        )
    digest = m.group("digest")
    if digest is not None:
        problem = _digest_problem(digest)
        if problem:
            raise ValueError(f"invalid reference {original!r}: {problem}")
    tag = m.group("tag")
    if digest is not None:
        tag = None  # name:tag@digest: the digest alone identifies the image
    elif tag is None:
        tag = DEFAULT_TAG
    return Reference(domain=m.group("domain"), path=m.group("path"), tag=tag, digest=digest)


def normalize(ref: str) -> str:
    """The fully qualified form of `ref` (`ubuntu` -> `docker.io/library/ubuntu:latest`)."""
    return str(parse(ref))


# --- scopes -------------------------------------------------------------------------------


def _host_problem(host: str) -> Optional[str]:
    """None when `host` is a lowercase DNS name, an IPv4 address or a bracketed IPv6 address."""
    if _IPV6_RE.fullmatch(host):
        return None
    if _IPV4_RE.fullmatch(host):
        if all(int(part) <= 255 for part in host.split(".")):
            return None
        return f"host {host!r} is not a valid IPv4 address"
    labels = host.split(".")
    if all(_LOWER_DOMAIN_COMPONENT_RE.fullmatch(label) for label in labels):
        return None
    if host.lower() != host and all(
        _LOWER_DOMAIN_COMPONENT_RE.fullmatch(label) for label in host.lower().split(".")
    ):
        return (
            f"host {host!r} must be lowercase: policy.json compares scopes as exact strings, "
            "so an upper-case host would never match"
        )
    return f"host {host!r} is not a DNS name, an IPv4 address or a bracketed IPv6 address"


def _port_problem(port: str) -> Optional[str]:
    if not port.isdigit() or not port.isascii():
        return f"port {port!r} is not a number"
    if port != str(int(port)) or not 1 <= int(port) <= 65535:
        return f"port {port!r} must be 1..65535 without leading zeros"
    return None


def _split_host_port(domain: str) -> Tuple[str, Optional[str]]:
    if domain.startswith("["):
        end = domain.find("]")
        if end != -1 and domain[end + 1 : end + 2] == ":":
            return domain[: end + 1], domain[end + 2 :]
        return domain, None
    host, sep, port = domain.partition(":")
    return host, (port if sep else None)


def _wildcard_problem(scope: str) -> Optional[str]:
    """`*.example.org`: only a leading `*.` and DNS labels, no port, namespace, tag or digest."""
    rest = scope[2:]
    if any(c in rest for c in "*/:@"):
        return (
            "a wildcard scope is `*.` followed by a domain only: no second `*`, port, "
            "namespace, tag or digest (containers/image rule)"
        )
    if not rest or not all(_LOWER_DOMAIN_COMPONENT_RE.fullmatch(p) for p in rest.split(".")):
        if rest.lower() != rest:
            return "a wildcard domain must be lowercase (scopes are compared as exact strings)"
        return f"{rest!r} after `*.` is not a domain name"
    return None


def _path_problem(path: str) -> Optional[str]:
    """The repository part of a scope, with an optional tag or digest on its end."""
    if not path:
        return "must not end with `/`"
    name, tag, digest = path, None, None
    if "@" in name:
        name, _, digest = name.partition("@")
    if ":" in name:
        name, _, tag = name.partition(":")
    for component in name.split("/"):
        if not component:
            return "empty path component (`//` or a trailing `/`)"
        if not _NAME_COMPONENT_RE.fullmatch(component):
            if _NAME_COMPONENT_RE.fullmatch(component.lower()):
                return (
                    f"repository component {component!r} must be lowercase "
                    "(Docker repository names are lowercase)"
                )
            return (
                f"invalid repository component {component!r}: lowercase letters and digits, "
                "separated by `.`, `_`, `__` or dashes"
            )
    if tag is not None and digest is not None:
        return "a scope has a tag or a digest, not both"
    if tag is not None and not _TAG_RE.fullmatch(tag):
        return f"invalid tag {tag!r}"
    if digest is not None:
        if not _DIGEST_RE.fullmatch(digest):
            return f"invalid digest {digest!r}"
        return _digest_problem(digest)
    return None


def check_scope(scope: str) -> Optional[str]:
    """None when `scope` is a valid, fully qualified policy scope; else why it is not.

    Valid: `host[:port][/namespace...][/repo][:tag|@digest]` or `*.example.org`. A scope must
    be fully qualified (`docker.io/library/ubuntu`, never `ubuntu`) because policy.json never
    normalises its scopes: a short scope would silently match nothing.
    """
    if not isinstance(scope, str) or scope == "":
        return (
            "must not be empty (an empty scope is the transport-wide default in policy.json; "
            "use images.default instead)"
        )
    if _BAD_CHAR_RE.search(scope):
        return "must not contain whitespace or control characters"
    if "://" in scope:
        return (
            "must not contain a URL scheme: write host[:port]/path, e.g. registry.example.org/hpc "
            "(policy.json would never match it)"
        )
    if scope.startswith("*."):
        return _wildcard_problem(scope)
    if "*" in scope:
        return "a wildcard is only allowed as a leading `*.` (e.g. *.example.org)"
    domain, slash, path = scope.partition("/")
    if domain.startswith("[") and "]" not in domain:
        return "an IPv6 host must be written in brackets, e.g. [fd00::1]:5000"
    problem = _domain_problem(domain, path if slash else None)
    if problem:
        return problem
    if not slash:
        return None
    problem = _path_problem(path)
    if problem:
        return problem
    if domain == DEFAULT_DOMAIN and "/" not in path and (":" in path or "@" in path):
        repo = path.split("@", 1)[0].split(":", 1)[0]
        return (f"never matches: docker.io references are normalised to "
                f"{DEFAULT_DOMAIN}/{OFFICIAL_REPO}/{repo}, so write the scope that way")
    name = f"{domain}/{path.split('@', 1)[0].split(':', 1)[0]}"
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        return f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
    return None


def _domain_problem(domain: str, path: Optional[str]) -> Optional[str]:
    """The `host[:port]` part of a scope: must be a real registry host, fully qualified."""
    host, port = _split_host_port(domain)
    qualified = "." in host or port is not None or host == "localhost" or host.startswith("[")
    if not qualified:
        example = scope_hint(domain, path)
        return (
            f"must be fully qualified, starting with a registry host (e.g. {example}): "
            "policy.json scopes are not normalised like short image names"
        )
    if host == LEGACY_DEFAULT_DOMAIN:
        return "write docker.io, not index.docker.io: references are normalised to docker.io"
    problem = _host_problem(host)
    if problem:
        return problem
    if port is not None:
        return _port_problem(port)
    return None


def scope_hint(first: str, path: Optional[str]) -> str:
    """The docker.io spelling of a short scope, as an example in messages."""
    if path is None:
        return f"{DEFAULT_DOMAIN}/{OFFICIAL_REPO}/{first}"
    return f"{DEFAULT_DOMAIN}/{first}/{path}"
