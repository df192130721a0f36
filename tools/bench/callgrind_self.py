#!/usr/bin/env python3
"""Own (self) instructions per function in a callgrind dump, largest first:
"IR<TAB>FUNCTION" lines. callgrind_annotate cannot be used for this on a dump
taken after `callgrind_control --zero`: it books the cost of the calls still
on the stack at the zero (thread start, the RX loop) to every caller on it.

    callgrind_self.py DUMP [ROWS]
"""
import sys

names, totals = {}, {}
function = None
skip_next_cost = False
for line in open(sys.argv[1], errors="replace"):
    line = line.rstrip("\n")
    if line.startswith(("fn=", "cfn=", "cfi=", "cob=")) or line.startswith("calls="):
        if line.startswith("fn="):
            spec = line[3:]
            if spec.startswith("("):
                number, _, name = spec[1:].partition(")")
                if name.strip():
                    names[number] = name.strip()
                function = names.get(number, number)
            else:
                function = spec
        elif line.startswith("calls="):
            skip_next_cost = True  # the next cost line is the callee's inclusive cost
        elif line.startswith("cfn="):
            spec = line[4:]
            if spec.startswith("("):
                number, _, name = spec[1:].partition(")")
                if name.strip():
                    names[number] = name.strip()
        continue
    if not line or not (line[0].isdigit() or line[0] in "+-*"):
        continue
    if skip_next_cost:
        skip_next_cost = False
        continue
    fields = line.split()
    if len(fields) >= 2 and function is not None:
        totals[function] = totals.get(function, 0) + int(fields[1])
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 12
for name, cost in sorted(totals.items(), key=lambda item: -item[1])[:rows]:
    print(f"{cost}\t{name}")
