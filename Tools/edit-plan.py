#!/usr/bin/env python3
"""Edits a plan's program JSON in place and writes it with fresh checksums, as a buggy tool or a
malicious file would: for showing that the plan verifier, not the checksums, refuses what is
inconsistent (docs/hostile-inputs.md).

    python3 Tools/edit-plan.py IN.plan OUT.plan OLD NEW [--nth K]

replaces the K-th (default first) occurrence of the text OLD in the program section by NEW, which
must be as long (so that no section moves), then recomputes the section's CRC-32, the section
table's and the header's. Layout: Sources/Plan/PlanFile.swift (64-byte header: magic, version,
flags, file size, table offset, table count, table CRC, ..., header CRC at byte 60; 32-byte table
entries: kind, reserved, offset, size, CRC, reserved).
"""
import argparse
import struct
import sys
import zlib

PROGRAM = 2  # PlanFormat.SectionKind.program


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--nth", type=int, default=1)
    a = p.parse_args()
    if len(a.old) != len(a.new):
        sys.exit("edit-plan: OLD and NEW must be as long")
    data = bytearray(open(a.input, "rb").read())
    table_offset, count = struct.unpack_from("<QI", data, 24)
    entries = [list(struct.unpack_from("<IIQQII", data, table_offset + 32 * i)) for i in range(count)]
    program = [e for e in entries if e[0] == PROGRAM]
    if len(program) != 1:
        sys.exit(f"edit-plan: {a.input}: no program section")
    entry = program[0]
    start, size = entry[2], entry[3]
    section = bytes(data[start:start + size])
    at = -1
    for _ in range(a.nth):
        at = section.find(a.old.encode(), at + 1)
        if at < 0:
            sys.exit(f"edit-plan: '{a.old}' occurs fewer than {a.nth} times in the program")
    data[start + at:start + at + len(a.old)] = a.new.encode()
    entry[4] = zlib.crc32(data[start:start + size])
    for i, e in enumerate(entries):
        struct.pack_into("<IIQQII", data, table_offset + 32 * i, *e)
    struct.pack_into("<I", data, 36, zlib.crc32(data[table_offset:table_offset + 32 * count]))
    struct.pack_into("<I", data, 60, zlib.crc32(data[0:60]))
    open(a.output, "wb").write(data)
    print(f"{a.output}: program byte {at}: '{a.old}' -> '{a.new}'")


if __name__ == "__main__":
    main()
