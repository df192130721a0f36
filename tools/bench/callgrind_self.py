#!/usr/bin/env python3
"""Own (self) instructions per function in a callgrind dump, largest first:
"IR<TAB>FUNCTION" lines. callgrind_annotate cannot be used for this on a dump
taken after `callgrind_control --zero`: it books the cost of the calls still
on the stack at the zero (thread start, the RX loop) to every caller on it.

    callgrind_self.py DUMP [ROWS]
"""
import sys

names, totals = {}, {}


def name_of(spec):
    """A function from "(id) name" (first use, defines id) or "(id)"."""
    if not spec.startswith("("):
        return spec
    number, _, name = spec[1:].partition(")")
    if name.strip():
        names[number] = name.strip()
    return names.get(number, number)


function = None
skip_next_cost = False
for line in open(sys.argv[1], errors="replace"):
    line = line.rstrip("\n")
    if line.startswith("fn="):
        function = name_of(line[3:])
    elif line.startswith("cfn="):
        name_of(line[4:])  # defines the id for later fn= lines
    elif line.startswith("calls="):
        skip_next_cost = True  # the next cost line is the callee's inclusive cost
    elif line and (line[0].isdigit() or line[0] in "+-*"):
        if skip_next_cost:
            skip_next_cost = False
            continue
        fields = line.split()
        if len(fields) >= 2 and function is not None:
            totals[function] = totals.get(function, 0) + int(fields[1])
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 12
for name, cost in sorted(totals.items(), key=lambda item: -item[1])[:rows]:
    print(f"{cost}\t{name}")
