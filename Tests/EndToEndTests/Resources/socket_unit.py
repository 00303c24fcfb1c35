#!/usr/bin/python3
"""Holds listening sockets as a systemd socket unit does, and runs the service with them (sd_listen_fds(3)).

Usage: socket_unit.py --listen ADDR [--listen ADDR ...] -- COMMAND [ARG ...]

ADDR is what ListenStream= takes: PORT (dual-stack [::]:PORT), IPV4:PORT or [IPV6]:PORT. The sockets are
handed to COMMAND as descriptors 3, 4, ... with LISTEN_FDS and LISTEN_PID set to its pid, and stay open here
for as long as this process runs, whatever happens to COMMAND: as systemd keeps them across a restart.

SIGUSR2 restarts COMMAND as `systemctl restart` does: SIGTERM, wait for it to exit, start it again with the same
sockets (connections that arrive meanwhile wait in the sockets' queues). SIGTERM stops COMMAND and exits with its
status. Each start prints "socket_unit: the service runs as pid N" (systemd's $MAINPID).
"""
import argparse
import os
import signal
import socket
import sys
import time


def bind(address):
    if address.isdigit():
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        where = ("::", int(address))
    elif address.startswith("["):
        host, port = address[1:].split("]:")
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        where = (host, int(port))
    else:
        host, port = address.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        where = (host, int(port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(where)
    sock.listen(4096)  # systemd's Backlog= default (SOMAXCONN)
    return sock


def start(sockets, command):
    pid = os.fork()
    if pid == 0:
        # Out of the way first, so that moving one to 3 + i never closes another.
        high = [os.dup(s.fileno()) for s in sockets]
        for index, descriptor in enumerate(high):
            os.dup2(descriptor, 3 + index, inheritable=True)
        os.closerange(3 + len(sockets), 4096)
        environment = dict(os.environ, LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(sockets)))
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            os.execvpe(command[0], command, environment)
        finally:
            os._exit(127)
    print(f"socket_unit: the service runs as pid {pid}", flush=True)
    return pid


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", action="append", required=True)
    parser.add_argument("command", nargs="+")
    arguments = parser.parse_args()
    sockets = [bind(address) for address in arguments.listen]
    requests = []
    signal.signal(signal.SIGUSR2, lambda *_: requests.append("restart"))
    signal.signal(signal.SIGTERM, lambda *_: requests.append("stop"))
    print(f"socket_unit: listening on {', '.join(arguments.listen)}", flush=True)
    pid = start(sockets, arguments.command)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            print(f"socket_unit: the service exited with {code}", flush=True)
            sys.exit(code if code >= 0 else 128 - code)
        if requests:
            request = requests.pop(0)
            os.kill(pid, signal.SIGTERM)
            _, status = os.waitpid(pid, 0)
            if request == "stop":
                sys.exit(os.waitstatus_to_exitcode(status))
            print("socket_unit: restarting the service", flush=True)
            pid = start(sockets, arguments.command)
        time.sleep(0.02)


if __name__ == "__main__":
    main()
