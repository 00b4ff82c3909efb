"""Entering the worker's namespaces: what works here, the unshare, and the init that serves inside.

`probe` tries, in forked children, the strongest set this machine allows: PID + network +
mount namespaces with the filesystem view (as root; unprivileged, inside a new user
namespace), then without the view, then none (`Isolation` says which). `become_init` enters
them for real: this process unshares and forks the namespace's init, which builds the view
(mounts.py) and returns to serve requests, while this process only waits outside. Under
bubblewrap the pool has done all this already; `probe` then only checks that evaluations
can mount their private scratch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import signal

from . import mounts, seccomp
from .mounts import check_syscall, libc
from .sandbox import (
    BUBBLEWRAP,
    MOUNT_NAMESPACE,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    PR_SET_PDEATHSIG,
    Isolation,
    Limits,
    in_child,
    prctl,
)
from .view import View

log = logging.getLogger(__name__)


def probe(limits: Limits, view: View | None, bwrap: str = "") -> Isolation:
    """The namespaces this worker can make for itself (tried in forked children: with the
    filesystem view, then without), or those bubblewrap made (`bwrap`: "root" or "user")."""
    no_net = not limits.network
    if bwrap:
        if view is None or not in_child(lambda: mounts.private_scratch(view, 1, None)):
            raise OSError("inside bubblewrap, but no private tmpfs can be mounted for an evaluation")
        return Isolation(pid_namespace=True, user_namespace=bwrap == "user", net_namespace=no_net, view=BUBBLEWRAP)
    base = Isolation(seccomp_network=no_net and seccomp.program() is not None)
    if limits.isolation == "basic":
        return base
    for how, with_view in ((MOUNT_NAMESPACE, view), ("", None)):
        if how and view is None:
            continue
        found = Isolation(pid_namespace=True, user_namespace=os.geteuid() != 0, net_namespace=no_net, view=how)
        if in_child(lambda: _try_namespaces(found, with_view)):  # noqa: B023 - called at once
            return found
        log.info("cannot set up %s here", found.describe())
    log.info("no PID namespace available here; using process groups and a /proc sweep")
    return base


def _try_namespaces(isolation: Isolation, view: View | None) -> None:
    enter_namespaces(isolation)
    if not in_child(lambda: view is None or _try_view(view)):
        raise OSError("the namespace's first process could not set up the view")


def _try_view(view: View) -> None:
    mounts.enter(view)
    mounts.private_scratch(view, 1, None)


def enter_namespaces(isolation: Isolation) -> None:
    """New PID (and network, user, mount) namespaces for this process's next child.

    Raises OSError if unshare fails (then nothing changed). Inside a new user namespace our
    own uid is mapped to itself so files and getuid() look the same; if that mapping cannot
    be written we carry on unmapped (uid shows as 65534 inside, file access is unchanged).
    Must run while the process is still dumpable (else /proc/self/uid_map is root's).
    """
    uid, gid = os.getuid(), os.getgid()
    check_syscall(libc.unshare(isolation.clone_flags), "unshare")
    if isolation.user_namespace:
        try:
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        except OSError as exc:
            log.warning("could not map uid %d into the user namespace: %s", uid, exc)


def become_init(isolation: Isolation, limits: Limits, protocol_fd: int, view: View | None) -> Isolation:
    """Move the worker loop into fresh PID (and network, user, mount) namespaces, as their
    init, inside the filesystem view.

    This process unshares, forks the init (which returns from here and serves requests), and
    stays outside only to wait for it: when the pool dies or kills us, the init gets SIGKILL
    (its parent-death signal) and the kernel ends every process in the namespace with it.
    """
    try:
        enter_namespaces(isolation)
    except OSError as exc:
        log.warning("could not enter a PID namespace (%s); using process groups instead", exc)
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        off = dict.fromkeys(("pid_namespace", "user_namespace", "net_namespace"), False)
        return dataclasses.replace(isolation, **off, view="", seccomp_network=not limits.network)
    alive_r, alive_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(alive_w)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if select.select([alive_r], [], [], 0)[0]:  # end of file: the outer process is gone
            os._exit(1)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL from outside ends us
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if isolation.view:
            assert view is not None
            mounts.enter(view)
        return isolation
    os.close(alive_r)
    prctl(PR_SET_DUMPABLE, 0)
    for fd in (0, 1, protocol_fd):  # the init talks to the pool, not us
        os.close(fd)
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:  # SIGTERM (the pool died): take the namespace down with us
        os.kill(pid, signal.SIGKILL)
        os._exit(1)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
