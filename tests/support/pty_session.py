#!/usr/bin/env python3
"""Drives `imsg-gateway simulate` in a real pseudo-terminal, as a person would.

Usage: pty_session.py BINARY quit|ctrl-d
Types as two people, waits for the assistant's reply, uses a command and tab completion, and
leaves with /quit or Ctrl-D. Exits 0 when every expectation was met, else prints what was
missing and the screen so far, and exits 1.
"""
import os
import pty
import select
import sys
import time

binary, how = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.environ["NO_COLOR"] = "1"
    os.environ["TERM"] = "xterm"
    os.execv(binary, [binary, "simulate"])

screen = b""


def expect(text, timeout=30.0):
    global screen
    want = text.encode()
    end = time.time() + timeout
    while want not in screen:
        left = end - time.time()
        if left <= 0:
            sys.stdout.write("missing %r in the screen:\n%s\n" % (text, screen.decode("utf-8", "replace")))
            os.kill(pid, 9)
            sys.exit(1)
        ready, _, _ = select.select([fd], [], [], min(left, 0.2))
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                continue
            screen += chunk
    # Later expectations look only at what comes after this one.
    screen = screen[screen.index(want) + len(want):]


def type_(text):
    os.write(fd, text.encode())


expect("Mom in Family> ")
type_("hello everyone\r")
expect("[Family] Mom: hello everyone")
expect("not answered: group 1 requires a mention")
expect("Mom in Family> ")
type_("/as Dad\r")
expect("typing as Dad")
expect("Dad in Family> ")
type_("@assistant are you there?\r")
expect("[Family] assistant: echo: @assistant are you there?")
expect("Dad in Family> ")
# Tab completion of a command: "/hist" becomes "/history".
type_("/hist\t 2\r")
expect("Dad: @assistant are you there?")
expect("me: echo: @assistant are you there?")
expect("Dad in Family> ")
if how == "quit":
    type_("/quit\r")
else:
    type_("\x04")
expect("bye")
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
if code != 0:
    print("simulate exited with %d" % code)
    sys.exit(1)
