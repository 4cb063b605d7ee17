"""A real, throwaway OpenLDAP slapd for tests and bench/ldap_read.py (shared launcher + data).

`Slapd(base_dir, schema=..., tls=..., size_limit=...)` writes a slapd.conf in a temp dir (mdb
backend, rfc2307 `nis.schema` or a derived rfc2307bis), loads generated LDIF offline with
`slapadd -q` (seconds for 100k users, where ldapadd takes minutes), and starts slapd on a free
127.0.0.1 port plus an ldapi socket in the temp dir (SASL EXTERNAL maps root to the rootdn).
With `tls=True` it makes a throwaway CA with openssl and also listens on ldaps:// (StartTLS on
the plain port). `size_limit=500` reproduces OpenLDAP's production default, the silent
truncation trap: `cn=reader` has `size.prtotal=unlimited` (paging gets everything), `cn=reader2`
and anonymous do not (paging must fail loudly).

`generate(n_users, n_groups, schema)` returns the LDIF and the `Expected` directory content, so
tests compare what a reader returns with what was loaded, entry by entry.

Pitfalls handled (notes/ldap-pam-subid.md §1.2): `-d none` keeps slapd in the foreground and
shows startup errors; its log goes to a file (a full stderr pipe would hang it); mdb `maxsize`
is raised from 10 MiB; readiness is a real LDAP bind answer, not a TCP connect; a port race is
retried.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

from tests.net_fixtures import free_port

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "secret"
READER_DN = f"cn=reader,{SUFFIX}"  # has size.prtotal=unlimited
READER2_DN = f"cn=reader2,{SUFFIX}"  # has no limits line: truncated at size_limit
READER_PW = "readerpw"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
UGROUPS = f"ou=ugroups,{SUFFIX}"  # groupOfUniqueNames (rfc2307bis only)
BROKEN = f"ou=broken,{SUFFIX}"  # entries a reader must refuse
SCHEMA_DIR = "/etc/ldap/schema"
MODULE_DIR = "/usr/lib/ldap"
PAST_DAYS = 19000  # shadowExpire 2022-01-08: expired
FUTURE_DAYS = 99999  # shadowExpire in 2243: not expired

# Attributes the tests map for Active-Directory-style names, and lock markers OpenLDAP lacks.
HPCTEST_SCHEMA = """\
attributetype ( 1.3.6.1.4.1.32473.1.1.1 NAME 'nsAccountLock'
    DESC '389-DS/FreeIPA account lock (a user attribute here, operational there)'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.32473.1.1.2 NAME 'sAMAccountName'
    DESC 'Active Directory logon name'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.32473.1.2.1 NAME 'hpcTestAccount' SUP top AUXILIARY
    MAY ( nsAccountLock $ sAMAccountName ) )
"""


def tools_missing() -> Optional[str]:
    """Why the fixture cannot run here, or None."""
    for tool in ("slapd", "slapadd", "openssl", "ldapsearch"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} not installed (Debian packages slapd, ldap-utils, openssl)"
    if not os.path.isdir(SCHEMA_DIR):
        return f"{SCHEMA_DIR} missing"
    return None


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


# --------------------------------------------------------------------------------------------
# data


@dataclass
class Expected:
    """What a correct reader returns for the generated data (keyed by `uid` names)."""

    users: Dict[str, Tuple[int, int, bool]] = field(default_factory=dict)  # uid, gid, disabled
    groups: Dict[str, Tuple[int, Set[str]]] = field(default_factory=dict)  # gid, members
    ugroups: Dict[str, Tuple[int, Set[str]]] = field(default_factory=dict)  # uniqueMember groups
    sam: Dict[str, str] = field(default_factory=dict)  # uid -> sAMAccountName


def _user_dn(name: str) -> str:
    return f"uid={name},{PEOPLE}"


def _user_entry(i: int, ppolicy: bool) -> Tuple[str, str, int, int, bool]:
    """LDIF of user i, its name, uid, gid and whether it counts as disabled."""
    name = f"u{i:06d}"
    uid, gid = 20000 + i, 5000 + i % 200
    shell = "/sbin/nologin" if i % 100 == 7 else "/bin/bash"
    extra: List[str] = []
    disabled = shell == "/sbin/nologin"
    if i % 40 == 3:
        extra.append(f"shadowExpire: {PAST_DAYS}")
        disabled = True
    elif i % 40 == 4:
        extra.append(f"shadowExpire: {FUTURE_DAYS}")
    elif i % 40 == 9:
        extra.append("shadowExpire: -1")
    if i % 50 == 5:
        extra.append("nsAccountLock: TRUE")
        disabled = True
    elif i % 50 == 6:
        extra.append("nsAccountLock: false")
    if ppolicy and i % 100 == 8:
        extra.append("pwdAccountLockedTime: 20240101000000Z")
        disabled = True
    lines = [
        f"dn: {_user_dn(name)}",
        "objectClass: inetOrgPerson",
        "objectClass: posixAccount",
        "objectClass: shadowAccount",
        "objectClass: hpcTestAccount",
        f"uid: {name}",
        f"cn: User {i}",
        f"sn: {i}",
        f"uidNumber: {uid}",
        f"gidNumber: {gid}",
        f"homeDirectory: /home/{name}",
        f"loginShell: {shell}",
        f"sAMAccountName: AD{i:06d}",
        *extra,
    ]
    return "\n".join(lines) + "\n\n", name, uid, gid, disabled


def _header(schema: str) -> List[str]:
    out = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n"
        "dc: example\no: Example\n",
    ]
    for ou in ("people", "groups", "broken") + (("ugroups",) if schema == "rfc2307bis" else ()):
        out.append(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n")
    for dn, cn in ((READER_DN, "reader"), (READER2_DN, "reader2")):
        out.append(
            f"dn: {dn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
            f"cn: {cn}\nuserPassword: {READER_PW}\n"
        )
    return [e + "\n" for e in out]


def _group_entry(schema: str, name: str, gid: int, users: Set[str], groups: Set[str]) -> str:
    lines = [f"dn: cn={name},{GROUPS}"]
    if schema == "rfc2307":
        lines += ["objectClass: posixGroup", f"cn: {name}", f"gidNumber: {gid}"]
        lines += [f"memberUid: {u}" for u in sorted(users)]
    else:
        lines += ["objectClass: groupOfNames", "objectClass: posixGroup", f"cn: {name}"]
        lines += [f"gidNumber: {gid}"]
        lines += [f"member: {_user_dn(u)}" for u in sorted(users)]
        lines += [f"member: cn={g},{GROUPS}" for g in sorted(groups)]
    return "\n".join(lines) + "\n\n"


def generate(
    n_users: int,
    n_groups: int = 200,
    schema: str = "rfc2307",
    ppolicy: bool = False,
    seed: int = 42,
) -> Tuple[str, Expected]:
    """Deterministic LDIF of `n_users` users in `n_groups` project groups, and what it means.

    Users: uidNumber 20000+i, primary gid 5000+i%200; a few expired (shadowExpire), locked
    (nsAccountLock, pwdAccountLockedTime when `ppolicy`), nologin, and harmless look-alikes
    (future expiry, shadowExpire -1, nsAccountLock false). Groups: grpNNN with the users whose
    primary group it is plus up to 2 random extra memberships per user. rfc2307bis adds
    nested groups with a cycle, a dangling member DN, and groupOfUniqueNames in ou=ugroups.
    """
    rng = random.Random(seed)
    exp = Expected()
    parts = _header(schema)
    members: Dict[str, Set[str]] = {f"grp{j:03d}": set() for j in range(n_groups)}
    for i in range(n_users):
        text, name, uid, gid, disabled = _user_entry(i, ppolicy)
        parts.append(text)
        exp.users[name] = (uid, gid, disabled)
        exp.sam[name] = f"AD{i:06d}"
        if n_groups:
            members[f"grp{(gid - 5000) % n_groups:03d}"].add(name)
            for _ in range(rng.randrange(3)):
                members[f"grp{rng.randrange(n_groups):03d}"].add(name)
    for j in range(n_groups):
        name = f"grp{j:03d}"
        if schema == "rfc2307bis" and not members[name]:
            members[name].add("u000000")  # groupOfNames MUST have a member
        parts.append(_group_entry(schema, name, 5000 + j, members[name], set()))
        exp.groups[name] = (5000 + j, set(members[name]))
    if schema == "rfc2307bis" and n_users >= 4:
        parts.append(_nested(exp))
    return "".join(parts), exp


def _nested(exp: Expected) -> str:
    """nest-a -> nest-b -> nest-c -> nest-a (a cycle), plus a dangling DN and unique groups."""
    text = ""
    chain = [("nest-a", "nest-b", "u000001"), ("nest-b", "nest-c", "u000002"),
             ("nest-c", "nest-a", "u000003")]
    for k, (name, sub, user) in enumerate(chain):
        text += _group_entry("rfc2307bis", name, 7000 + k, {user}, {sub})
        exp.groups[name] = (7000 + k, {"u000001", "u000002", "u000003"})
    # a leaf group reached only through nesting, and a DN naming no entry (ignored)
    text += _group_entry("rfc2307bis", "leaf", 7010, {"u000000"}, set())
    text += (
        f"dn: cn=top,{GROUPS}\nobjectClass: groupOfNames\nobjectClass: posixGroup\ncn: top\n"
        f"gidNumber: 7011\nmember: cn=leaf,{GROUPS}\n"
        f"member: UID=u000002, OU=People,{SUFFIX.upper()}\n"  # another spelling of a user DN
        f"member: uid=ghost,{PEOPLE}\n\n"
    )
    exp.groups["leaf"] = (7010, {"u000000"})
    exp.groups["top"] = (7011, {"u000000", "u000002"})
    text += (
        f"dn: cn=licence,{UGROUPS}\nobjectClass: groupOfUniqueNames\nobjectClass: posixGroup\n"
        f"cn: licence\ngidNumber: 7100\nuniqueMember: {_user_dn('u000001')}\n"
        f"uniqueMember: {_user_dn('u000003')}#'0101'B\n\n"
    )
    exp.ugroups["licence"] = (7100, {"u000001", "u000003"})
    return text


def broken_ldif() -> str:
    """Users in ou=broken that a reader must refuse when `uid` is mapped to employeeNumber."""
    rows = [
        ("okay", "employeeNumber: 30001", "30001"),
        ("noid", "", "30002"),
        ("textid", "employeeNumber: 12x", "30003"),
        ("negid", "employeeNumber: -5", "30004"),
        ("twin", "employeeNumber: 30001", "30005"),
        ("bad name", "employeeNumber: 30006", "30006"),
    ]
    out = ""
    for name, extra, uid in rows:
        out += (
            f"dn: cn={name},{BROKEN}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"
            f"cn: {name}\nsn: x\nuid: {name}\nuidNumber: {uid}\ngidNumber: 100\n"
            f"homeDirectory: /home/x\n" + (extra + "\n" if extra else "") + "\n"
        )
    return out


# --------------------------------------------------------------------------------------------
# TLS


# Python >= 3.13 verifies with VERIFY_X509_STRICT: a CA needs keyUsage (keyCertSign) and a
# critical basicConstraints, a leaf an authorityKeyIdentifier. Real site CAs must too
# (docs/install.md); these throwaway ones carry what a well-formed CA carries.
CA_EXTENSIONS = ("basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign",
                 "subjectKeyIdentifier=hash")
SERVER_EXTENSIONS = ("basicConstraints=CA:FALSE",
                     "keyUsage=critical,digitalSignature,keyEncipherment",
                     "extendedKeyUsage=serverAuth", "subjectKeyIdentifier=hash",
                     "authorityKeyIdentifier=keyid,issuer")


def make_ca(directory: Path, name: str) -> Tuple[Path, Path]:
    """A throwaway CA (cert, key)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    addext = [arg for ext in CA_EXTENSIONS for arg in ("-addext", ext)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert), *addext],
        check=True, capture_output=True,
    )
    return cert, key


def make_server_cert(directory: Path, ca: Tuple[Path, Path]) -> Tuple[Path, Path]:
    """A server certificate for 127.0.0.1/localhost signed by `ca`."""
    cert, key, csr = directory / "server.crt", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    # libldap (python-ldap) checks a "localhost" URI against this machine's own name
    names = sorted({"localhost", socket.gethostname(), socket.getfqdn()} - {""})
    san = "subjectAltName=IP:127.0.0.1," + ",".join(f"DNS:{n}" for n in names)
    ext.write_text("".join(line + "\n" for line in (san, *SERVER_EXTENSIONS)))
    subprocess.run(
        ["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(csr)],
        check=True, capture_output=True,
    )
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert)],
        check=True, capture_output=True,
    )
    os.chmod(key, 0o600)
    return cert, key


# --------------------------------------------------------------------------------------------
# slapd


class Slapd:
    """One slapd in `base_dir`: prepare() -> slapadd(ldif) -> start() ... stop()."""

    def __init__(
        self,
        base_dir: Path,
        schema: str = "rfc2307",
        tls: bool = False,
        size_limit: Optional[int] = None,  # None: unlimited
    ) -> None:
        self.dir = Path(base_dir)
        self.schema = schema
        self.tls = tls
        self.size_limit = size_limit
        self.port = 0
        self.tls_port = 0
        self.proc: Optional[subprocess.Popen] = None
        self.ca_file: Optional[str] = None
        self.ppolicy = os.path.exists(f"{MODULE_DIR}/ppolicy.la")
        self.conf = self.dir / "slapd.conf"
        self.socket = self.dir / "ldapi"

    # ---- addresses
    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        # by name, as sites name their servers: ldap3's own hostname check (used on Python >=
        # 3.12, where ssl.match_hostname is gone) accepts DNS names only, never an IP address
        return f"ldaps://localhost:{self.tls_port}"

    @property
    def ldapi_uri(self) -> str:
        return "ldapi://" + urllib.parse.quote(str(self.socket), safe="")

    # ---- lifecycle
    def prepare(self) -> Slapd:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        schema_file = self.dir / "hpctest.schema"
        schema_file.write_text(HPCTEST_SCHEMA)
        nis = f"{SCHEMA_DIR}/nis.schema"
        if self.schema == "rfc2307bis":
            nis = str(self.dir / "rfc2307bis.schema")
            Path(nis).write_text(_rfc2307bis_schema())
        tls_lines = self._tls_config() if self.tls else []
        self.conf.write_text("\n".join(self._config(nis, str(schema_file), tls_lines)) + "\n")
        return self

    def _config(self, nis: str, hpctest: str, tls_lines: List[str]) -> List[str]:
        limit = "unlimited" if self.size_limit is None else str(self.size_limit)
        lines = [f"include {SCHEMA_DIR}/{s}.schema" for s in ("core", "cosine")]
        lines += [f"include {nis}", f"include {SCHEMA_DIR}/inetorgperson.schema"]
        lines += [f"include {hpctest}", f"modulepath {MODULE_DIR}"]
        if any(p.name.startswith("back_mdb") for p in Path(MODULE_DIR).glob("back_mdb*")):
            lines.append("moduleload back_mdb")
        if self.ppolicy:
            lines.append("moduleload ppolicy")  # defines pwdAccountLockedTime
        uid, gid = os.getuid(), os.getgid()
        lines += [
            f"pidfile {self.dir}/slapd.pid",
            f"argsfile {self.dir}/slapd.args",
            f"sizelimit {limit}",
            f'authz-regexp "gidNumber={gid}\\\\+uidNumber={uid},cn=peercred,cn=external,cn=auth"'
            f' "{ROOT_DN}"',
            *tls_lines,
            "database mdb",
            f'suffix "{SUFFIX}"',
            f'rootdn "{ROOT_DN}"',
            f"rootpw {ROOT_PW}",
            f"directory {self.dir}/data",
            "maxsize 4294967296",
            "dbnosync",
            "index objectClass eq",
            "index uid,memberUid eq",
            "index uidNumber,gidNumber eq",
            "access to attrs=userPassword by self write by anonymous auth by * none",
            "access to * by * read",
            f'limits dn.exact="{READER_DN}" size.prtotal=unlimited',
        ]
        return lines

    def _tls_config(self) -> List[str]:
        ca = make_ca(self.dir, "ca")
        cert, key = make_server_cert(self.dir, ca)
        self.ca_file = str(ca[0])
        return [
            f"TLSCACertificateFile {ca[0]}",
            f"TLSCertificateFile {cert}",
            f"TLSCertificateKeyFile {key}",
        ]

    def slapadd(self, ldif: str) -> None:
        path = self.dir / "load.ldif"
        path.write_text(ldif)
        proc = subprocess.run(
            [_tool("slapadd"), "-q", "-f", str(self.conf), "-b", SUFFIX, "-l", str(path)],
            capture_output=True, text=True,
        )
        path.unlink()
        if proc.returncode != 0:
            raise RuntimeError(f"slapadd failed ({proc.returncode}): {proc.stderr.strip()}")

    def start(self, attempts: int = 5) -> Slapd:
        last = ""
        for _ in range(attempts):
            self.port = free_port()
            self.tls_port = free_port() if self.tls else 0
            listen_tls = f"ldaps://127.0.0.1:{self.tls_port}"  # clients say localhost
            urls = [self.uri, self.ldapi_uri] + ([listen_tls] if self.tls else [])
            log = open(self.dir / "slapd.log", "ab")  # noqa: SIM115 - handed to Popen
            try:
                self.proc = subprocess.Popen(
                    [_tool("slapd"), "-f", str(self.conf), "-h", " ".join(urls),
                     "-n", "slapd-hpctest", "-d", "none"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )
            finally:
                log.close()
            if self._wait_ready():
                return self
            last = (self.dir / "slapd.log").read_text(errors="replace")[-2000:]
            self.stop()
        if "apparmor" in last.lower() or "Permission denied" in last:
            pytest.skip(f"slapd cannot use a temp dir here (AppArmor?): {last.strip()}")
        raise RuntimeError(f"slapd did not start: {last.strip()}")

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        """True once slapd answers an anonymous bind (a TCP connect alone is not enough)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(bytes.fromhex("300c020101600702010304008000"))
                    if s.recv(64):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _rfc2307bis_schema() -> str:
    """Debian ships only RFC2307 nis.schema: make posixGroup AUXILIARY (the rfc2307bis change)."""
    text = Path(f"{SCHEMA_DIR}/nis.schema").read_text()
    old = (
        "\tSUP top STRUCTURAL\n\tMUST ( cn $ gidNumber )\n"
        "\tMAY ( userPassword $ memberUid $ description ) )"
    )
    new = (
        "\tSUP top AUXILIARY\n\tMUST gidNumber\n"
        "\tMAY ( cn $ userPassword $ memberUid $ description ) )"
    )
    if old not in text:
        raise RuntimeError("unexpected nis.schema: cannot derive rfc2307bis")
    return text.replace(old, new)


def started_slapd(
    base_dir: Path, ldif: str, schema: str = "rfc2307", tls: bool = False,
    size_limit: Optional[int] = None,
) -> Slapd:
    """Prepare, load and start one slapd (tests and bench)."""
    server = Slapd(base_dir, schema=schema, tls=tls, size_limit=size_limit).prepare()
    server.slapadd(ldif)
    return server.start()


# --------------------------------------------------------------------------------------------
# pytest fixtures (import them into a test module)

N_USERS = 1000  # twice OpenLDAP's default size limit, so truncation is visible


@dataclass
class LdapServer:
    slapd: Slapd
    expected: Expected


def _server(tmp_factory: pytest.TempPathFactory, schema: str, tls: bool) -> Iterator[LdapServer]:
    reason = tools_missing()
    if reason:
        pytest.skip(reason)
    base = tmp_factory.mktemp(f"slapd-{schema}")
    server = Slapd(base, schema=schema, tls=tls, size_limit=500).prepare()
    ldif, expected = generate(N_USERS, 200, schema, ppolicy=server.ppolicy)
    server.slapadd(ldif + broken_ldif())
    server.start()
    try:
        yield LdapServer(server, expected)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def slapd_rfc2307(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    """rfc2307 (memberUid), TLS listener, size limit 500, 1000 users."""
    yield from _server(tmp_path_factory, "rfc2307", tls=True)


@pytest.fixture(scope="session")
def slapd_rfc2307bis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    """rfc2307bis (member / uniqueMember DNs, nested groups with a cycle), size limit 500."""
    yield from _server(tmp_path_factory, "rfc2307bis", tls=False)


def have_python_ldap() -> bool:
    try:
        import ldap  # noqa: F401
    except ImportError:
        return False
    return True


# both LDAP backends; python-ldap's tests skip where it is not installed
BACKENDS = ["ldap3", pytest.param("python-ldap", marks=pytest.mark.skipif(
    not have_python_ldap(), reason="python-ldap not installed"))]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def secret(tmp_path: Path) -> str:
    """The reader's bind password file, 0600 (one trailing newline is stripped)."""
    path = tmp_path / "ldap.secret"
    path.write_text(READER_PW + "\n")
    os.chmod(path, 0o600)
    return str(path)
