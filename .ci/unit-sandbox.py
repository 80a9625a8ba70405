"""Runs a command under the seccomp part of a systemd unit's sandbox, the way systemd builds it.

    python3 .ci/unit-sandbox.py <unit file> <command> [args...]

From the unit's [Service] section it applies SystemCallFilter= (allow-lists and ~deny-lists of
system calls and @groups, expanded by `systemd-analyze syscall-filter`), SystemCallErrorNumber=,
RestrictAddressFamilies= (an allow-list: socket() in any other family fails with EAFNOSUPPORT)
and MemoryDenyWriteExecute= (no memory both writable and executable, no mprotect to executable),
then execs the command. systemd implements these with seccomp filters too; the rest of the unit's
sandbox (mount namespaces, read-only file system, capabilities) is not emulated here.

The install test (.ci/install-test.sh) runs the unit's ExecStartPre and ExecStart through it, so
that a system call or socket family the forwarder needs but the unit forbids fails CI. Needs
libseccomp (a dependency of Debian's systemd package) and systemd-analyze.
"""

import ctypes
import errno
import os
import socket
import subprocess
import sys

ALLOW = 0x7FFF0000
CMP_EQ, CMP_MASKED_EQ = 4, 7
PROT_WRITE, PROT_EXEC = 2, 4
MAX_ADDRESS_FAMILY = 64


def errno_action(number):
    return 0x00050000 | (number & 0xFFFF)


class Comparison(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


seccomp = ctypes.CDLL("libseccomp.so.2")
seccomp.seccomp_init.restype = ctypes.c_void_p
seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
seccomp.seccomp_rule_add_array.argtypes = [
    ctypes.c_void_p,
    ctypes.c_uint32,
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_void_p,
]
seccomp.seccomp_load.argtypes = [ctypes.c_void_p]


def add_rule(context, action, name, *comparisons):
    number = seccomp.seccomp_syscall_resolve_name(name.encode())
    if number < 0:
        return  # not a system call of this architecture
    array = (Comparison * len(comparisons))(*comparisons) if comparisons else None
    if seccomp.seccomp_rule_add_array(context, action, number, len(comparisons), array) != 0:
        sys.exit(f"unit-sandbox: cannot add a rule for {name}")


def service_settings(unit):
    settings = {}
    section = None
    with open(unit) as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == "[Service]" and "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                settings.setdefault(key, []).append(value)
    return settings


def syscall_groups():
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    groups, current = {}, None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), set())
        elif line.strip() and not line.strip().startswith("#") and current is not None:
            current.add(line.strip())
    return groups


def expand(names, groups):
    result = set()
    for name in names:
        if name.startswith("@"):
            if name not in groups:
                sys.exit(f"unit-sandbox: unknown system call group {name}")
            result |= expand(groups[name], groups)
        else:
            result.add(name)
    return result


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    settings = service_settings(sys.argv[1])
    filters = []

    call_filters = settings.get("SystemCallFilter", [])
    if call_filters:
        groups = syscall_groups()
        allowed, denied = None, set()
        for value in call_filters:
            if value.startswith("~"):
                denied |= expand(value[1:].split(), groups)
            else:
                allowed = (allowed or set()) | expand(value.split(), groups)
        error = settings.get("SystemCallErrorNumber", ["EPERM"])[-1]
        refuse = errno_action(getattr(errno, error))
        if allowed is not None:
            context = seccomp.seccomp_init(refuse)
            for name in sorted(allowed - denied):
                add_rule(context, ALLOW, name)
        else:
            context = seccomp.seccomp_init(ALLOW)
            for name in sorted(denied):
                add_rule(context, refuse, name)
        filters.append(context)

    extra = seccomp.seccomp_init(ALLOW)
    families = " ".join(settings.get("RestrictAddressFamilies", [])).split()
    if families:
        if families[0].startswith("~"):
            sys.exit("unit-sandbox: deny-lists of address families are not emulated")
        kept = {getattr(socket, family) for family in families}
        for family in range(MAX_ADDRESS_FAMILY):
            if family not in kept:
                add_rule(
                    extra,
                    errno_action(errno.EAFNOSUPPORT),
                    "socket",
                    Comparison(0, CMP_EQ, family, 0),
                )
    if settings.get("MemoryDenyWriteExecute", ["false"])[-1] in ("true", "yes", "1", "on"):
        wx = PROT_WRITE | PROT_EXEC
        add_rule(extra, errno_action(errno.EPERM), "mmap", Comparison(2, CMP_MASKED_EQ, wx, wx))
        for call in ("mprotect", "pkey_mprotect"):
            add_rule(
                extra,
                errno_action(errno.EPERM),
                call,
                Comparison(2, CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC),
            )
    filters.append(extra)

    # The system call allow-list last: it may forbid loading another filter.
    for context in reversed(filters):
        loaded = seccomp.seccomp_load(context)
        if loaded != 0:
            sys.exit(f"unit-sandbox: cannot load the seccomp filter: {os.strerror(-loaded)}")
    os.execvp(sys.argv[2], sys.argv[2:])


main()
