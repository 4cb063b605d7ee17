"""Reference normalisation and scope checks against Docker's own test tables (restated).

Cases come from docker/distribution `reference/normalize_test.go` and `reference_test.go`
and containers/image `docker/policyconfiguration/naming_test.go`, rewritten as expected
normalised strings.
"""

from __future__ import annotations

import contextlib
from typing import List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcpolicy.policy.reference import Reference, check_scope, normalize, parse

D64 = "sha256:" + "f" * 64
D512 = "sha512:" + "f" * 128

VALID = [
    # (input, normalised)
    ("debian", "docker.io/library/debian:latest"),
    ("ubuntu", "docker.io/library/ubuntu:latest"),
    ("library/debian", "docker.io/library/debian:latest"),
    ("docker/docker", "docker.io/docker/docker:latest"),
    ("fooo/bar", "docker.io/fooo/bar:latest"),
    ("nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu:latest"),
    ("docker.io/ubuntu", "docker.io/library/ubuntu:latest"),
    ("docker.io/docker/docker", "docker.io/docker/docker:latest"),
    ("index.docker.io/ubuntu", "docker.io/library/ubuntu:latest"),
    ("index.docker.io/docker/docker", "docker.io/docker/docker:latest"),
    ("ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base:latest"),
    ("docker.io/ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base:latest"),
    ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase:latest"),
    ("127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase:latest"),
    ("localhost:8000/private/moonbase", "localhost:8000/private/moonbase:latest"),
    ("localhost/privatebase", "localhost/privatebase:latest"),
    ("example.com/private/moonbase", "example.com/private/moonbase:latest"),
    ("example.com:8000/private/moonbase", "example.com:8000/private/moonbase:latest"),
    ("test_com", "docker.io/library/test_com:latest"),
    ("test.com:tag", "docker.io/library/test.com:tag"),
    ("test.com:5000", "docker.io/library/test.com:5000"),
    ("test.com/repo:tag", "test.com/repo:tag"),
    ("test:5000/repo", "test:5000/repo:latest"),
    ("test:5000/repo:tag", "test:5000/repo:tag"),
    ("test:5000/repo@" + D64, "test:5000/repo@" + D64),
    ("test:5000/repo:tag@" + D64, "test:5000/repo@" + D64),  # the digest decides
    ("lowercase:Uppercase", "docker.io/library/lowercase:Uppercase"),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com/bar/baz/quux:latest"),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com/bar/baz/quux:some-long-tag"),
    (
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "b.gcr.io/test.example.com/my-app:test.example.com",
    ),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage:xn--n3h.com"),
    ("xn--7o8h.com/myimage:xn--7o8h.com@" + D512, "xn--7o8h.com/myimage@" + D512),
    ("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080"),
    ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080"),
    ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000/repo:latest"),
    ("[2001:db8::1]/repo", "[2001:db8::1]/repo:latest"),
    ("docker://ubuntu", "docker.io/library/ubuntu:latest"),
    ("a.b/c__d/e-f--g/h.i_j:T_1.x-y", "a.b/c__d/e-f--g/h.i_j:T_1.x-y"),
]

INVALID = [
    # (input, substring of the message)
    ("", "empty"),
    (":justtag", "invalid reference format"),
    ("@" + D64, "invalid reference format"),
    ("repo@sha256:" + "f" * 34, "64 lowercase hex"),
    ("validname@invaliddigest:" + "f" * 64, "unsupported digest algorithm"),
    ("Uppercase:tag", "must be lowercase"),
    ("Docker/docker", "must be lowercase"),
    ("docker.io/docker/Docker", "must be lowercase"),
    ("test:5000/Uppercase/lowercase:tag", "must be lowercase"),
    ("docker///docker", "invalid reference format"),
    ("docker.io/docker///docker", "invalid reference format"),
    ("aa/asdf$$^/aa", "invalid reference format"),
    ("a" * 64, "64-byte hexadecimal"),
    ("1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", "64-byte hexadecimal"),
    ("[2001:db8::1]", "invalid reference format"),
    ("[fe80::1%eth0]:5000/repo", "invalid reference format"),
    ("registry.example.org/" + "a/" * 127 + "a", "255 characters"),
    ("x/y:" + "t" * 129, "invalid reference format"),
    ("ubuntu latest", "whitespace"),
    ("ubuntu\n", "whitespace"),
    ("http://registry.example.org/x", "URL scheme"),
    ("oci:/tmp/x", "invalid reference format"),
    ("repo@sha256:" + "F" * 64, "lowercase hex"),
]


@pytest.mark.parametrize("ref,expected", VALID)
def test_normalize_docker_table(ref: str, expected: str) -> None:
    assert normalize(ref) == expected


@pytest.mark.parametrize("ref,message", INVALID)
def test_normalize_rejects(ref: str, message: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        normalize(ref)
    assert message in str(info.value)


def test_longest_name_allowed() -> None:
    path = "a/" * 116 + "abc"  # docker.io/ + 235 characters = 245 <= 255
    assert normalize(path + ":t").endswith(path + ":t")
    long_name = "r.io/" + "a" * 250  # 255 exactly
    assert parse(long_name).name == long_name
    with pytest.raises(ValueError, match="255"):
        parse(long_name + "a")


def test_normalize_is_idempotent_on_table() -> None:
    for _ref, expected in VALID:
        assert normalize(expected) == expected


def test_reference_fields() -> None:
    ref = parse("registry.example.org:5000/hpc/bio/blast:2.14@" + D64)
    assert ref == Reference("registry.example.org:5000", "hpc/bio/blast", None, D64)
    assert ref.name == "registry.example.org:5000/hpc/bio/blast"


def test_namespaces_like_containers_image() -> None:
    # naming_test.go: the identity, then parents, then wildcards of the port-less host
    assert parse("example.com:5000/ns/repo:tag").scopes() == [
        "example.com:5000/ns/repo:tag",
        "example.com:5000/ns/repo",
        "example.com:5000/ns",
        "example.com:5000",
        "*.com",
    ]
    assert parse("sub.example.org/repo").scopes() == [
        "sub.example.org/repo:latest",
        "sub.example.org/repo",
        "sub.example.org",
        "*.example.org",
        "*.org",
    ]
    assert parse("localhost/repo@" + D64).scopes() == [
        "localhost/repo@" + D64,
        "localhost/repo",
        "localhost",
    ]
    assert parse("[fd00::1]:5000/r").namespaces() == ["[fd00::1]:5000/r", "[fd00::1]:5000"]


VALID_SCOPES = [
    "registry.example.org",
    "registry.example.org/hpc",
    "registry.example.org/hpc/bio/blast",
    "registry.example.org/hpc/bio/blast:2.14",
    "registry.example.org/hpc/bio/blast@" + D64,
    "registry.example.org:5000",
    "registry.example.org:65535/x",
    "127.0.0.1:5055/allowed",
    "localhost",
    "localhost:5000/x",
    "[fd00::1]:5000/x",
    "[fd00::1]",
    "docker.io/library/ubuntu",
    "docker.io/library",
    "*.example.org",
    "*.org",
    "xn--n3h.com/a",
]

INVALID_SCOPES = [
    ("", "must not be empty"),
    ("ubuntu", "fully qualified"),
    ("library/ubuntu", "fully qualified"),
    ("http://registry.example.org/hpc", "URL scheme"),
    ("https://registry.example.org", "URL scheme"),
    ("registry.example.org/Hpc", "lowercase"),
    ("Registry.Example.org/hpc", "lowercase"),
    ("*.Example.org", "lowercase"),
    ("registry.example.org/hpc ", "whitespace"),
    ("registry.example.org/\x00", "control"),
    ("registry.example.org/h\tpc", "whitespace"),
    ("registry.example.org/", "must not end"),
    ("registry.example.org//hpc", "empty path component"),
    ("registry.example.org:0/x", "1..65535"),
    ("registry.example.org:65536", "1..65535"),
    ("registry.example.org:080", "leading zeros"),
    ("registry.example.org:http", "not a number"),
    ("example.*.org", "leading `*.`"),
    ("*example.org", "leading `*.`"),
    ("*.example.org:5000", "wildcard"),
    ("*.example.org/hpc", "wildcard"),
    ("*.*.org", "wildcard"),
    ("*.", "not a domain"),
    ("registry.example.org/a:b@" + D64, "not both"),
    ("registry.example.org/a:-bad", "invalid tag"),
    ("registry.example.org/a@md5:" + "f" * 32, "unsupported digest"),
    ("registry.example.org/a@sha256:abc", "invalid digest"),
    ("index.docker.io/library/ubuntu", "docker.io"),
    ("reg_istry.example.org/x", "not a DNS name"),
    ("300.1.1.1/x", "IPv4"),
    ("[fd00::1/x", "brackets"),
    ("r.io/" + "a" * 251, "255"),
    ("r.io/a$", "invalid repository component"),
]


@pytest.mark.parametrize("scope", VALID_SCOPES)
def test_check_scope_accepts(scope: str) -> None:
    assert check_scope(scope) is None


@pytest.mark.parametrize("scope,message", INVALID_SCOPES)
def test_check_scope_rejects(scope: str, message: str) -> None:
    problem = check_scope(scope)
    assert problem is not None
    assert message in problem


def test_every_matching_scope_of_a_reference_is_valid() -> None:
    """Scopes we generate for lookups are themselves valid scopes (except IP wildcards)."""
    for ref, _ in VALID:
        for scope in parse(ref).scopes():
            if scope.startswith("*.") and scope[2:].isdigit():
                continue
            assert check_scope(scope) is None, scope


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
_component = st.from_regex(r"[a-z0-9]+([._-][a-z0-9]+)?", fullmatch=True)


@st.composite
def _references(draw: st.DrawFn) -> str:
    host = ".".join(draw(st.lists(_label, min_size=2, max_size=3)))
    port: Optional[int] = draw(st.one_of(st.none(), st.integers(1, 65535)))
    path: List[str] = draw(st.lists(_component, min_size=1, max_size=3))
    domain = host if port is None else f"{host}:{port}"
    tag = draw(
        st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,9}", fullmatch=True))
    )
    return f"{domain}/{'/'.join(path)}" + (f":{tag}" if tag else "")


@settings(max_examples=100, deadline=None)
@given(_references())
def test_qualified_references_round_trip(ref: str) -> None:
    parsed = parse(ref)
    assert normalize(str(parsed)) == str(parsed)
    for scope in parsed.scopes()[:-1]:
        if not scope.startswith("*."):
            assert check_scope(scope) is None, scope


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_parse_never_crashes(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse(text)
    check_scope(text)
