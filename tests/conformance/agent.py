#!/usr/bin/env python3
"""Conformance-suite agent: records every envelope it is handed, then answers like the echo agent.

Usage (as the gateway's exec agent): agent.py ENVELOPES_JSONL
The gateway writes one envelope (JSON) on stdin; this appends it, compacted, as one line to
ENVELOPES_JSONL and prints "echo: <text>" so replies read the same as with the echo agent.
A text "attach PATH [PATH...]" is answered with a reply object that sends those files after
the text "here you go"; "attach only PATH" sends the file with no text.
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
    text = find_text(envelope)
    words = text.split()
    if words[:2] == ["attach", "only"]:
        sys.stdout.write(json.dumps({"files": words[2:]}))
    elif words[:1] == ["attach"]:
        sys.stdout.write(json.dumps({"text": "here you go", "files": words[1:]}))
    else:
        sys.stdout.write("echo: " + text)


if __name__ == "__main__":
    main()
