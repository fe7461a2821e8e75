#!/usr/bin/env python3
"""Conformance-suite agent: records every envelope it is handed, then answers like the echo agent.

Usage (as the gateway's exec agent): agent.py ENVELOPES_JSONL
The gateway writes one envelope (JSON) on stdin; this appends it, compacted, as one line to
ENVELOPES_JSONL and prints "echo: <text>" so replies read the same as with the echo agent.
"""
import json
import sys


def find_text(value):
    """The message text: the shallowest string under a key named "text"."""
    queue = [value]
    while queue:
        item = queue.pop(0)
        if isinstance(item, dict):
            text = item.get("text")
            if isinstance(text, str):
                return text
            queue.extend(item.values())
        elif isinstance(item, list):
            queue.extend(item)
    return ""


def main():
    raw = sys.stdin.read()
    envelope = json.loads(raw)
    with open(sys.argv[1], "a", encoding="utf-8") as log:
        log.write(json.dumps(envelope, separators=(",", ":")) + "\n")
    sys.stdout.write("echo: " + find_text(envelope))


if __name__ == "__main__":
    main()
