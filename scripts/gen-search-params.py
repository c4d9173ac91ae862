#!/usr/bin/env python3
"""Generate shared/fhir/src/search/r4.rs: the R4 (4.0.1) search parameter table.

Usage: scripts/gen-search-params.py [HANDOUT_DIR]

HANDOUT_DIR (default: ../shared/fhir/r4 relative to the repository root) holds
  search-parameters.json              the R4 SearchParameter Bundle (1,375 definitions)
  compartmentdefinition-patient.json  the R4 Patient CompartmentDefinition
The other four R4 compartments are small data files checked in under shared/fhir/r4/ (only the
fields read here: code, resource[] {code, param[]}, and only the member types, the ones listed
with params). Their contents were transcribed from the FHIR R4 `compartment.json` Bundle that
the Microsoft FHIR Server ships (src/Microsoft.Health.Fhir.Core/Data/R4/compartment.json,
CompartmentDefinitions encounter, relatedPerson and device at version 4.0.1, practitioner at
4.0.0); the Encounter table matches the published R4 compartmentdefinition-encounter page. Every
param of every compartment is checked below against the generated table.

The output is deterministic (same input, same bytes) and formatted with `rustfmt --edition 2024`.
The parameter table itself is one line per (type, parameter) pair under #[rustfmt::skip].
"""

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "shared/fhir/src/search/r4.rs"
TYPES_RS = REPO / "shared/fhir/src/types.rs"
DATA = REPO / "shared/fhir/r4"
URL_PREFIX = "http://hl7.org/fhir/SearchParameter/"

# Common parameters: base Resource applies to every type, DomainResource to every type except
# the three R4 resources that are not DomainResources.
NOT_DOMAIN = {"Binary", "Bundle", "Parameters"}
COMMON_BASES = {"Resource", "DomainResource"}

KINDS = {
    "number": "Number",
    "date": "Date",
    "string": "String",
    "token": "Token",
    "reference": "Reference",
    "composite": "Composite",
    "quantity": "Quantity",
    "uri": "Uri",
    "special": "Special",
}

# (compartment file name, the folder it is read from: "handout" or "repo")
COMPARTMENTS = [
    ("device", "repo"),
    ("encounter", "repo"),
    ("patient", "handout"),
    ("practitioner", "repo"),
    ("relatedperson", "repo"),
]


def die(msg):
    sys.exit(f"gen-search-params: {msg}")


def r4_types():
    """R4_TYPES from types.rs, the order params() indexes by."""
    src = TYPES_RS.read_text()
    m = re.search(r"pub const R4_TYPES: &\[&str\] = &\[(.*?)\];", src, re.S)
    if not m:
        die(f"R4_TYPES not found in {TYPES_RS}")
    types = re.findall(r'"(\w+)"', m.group(1))
    if types != sorted(types) or len(types) != 146:
        die("R4_TYPES is not the 146 sorted R4 types")
    return types


def split_top(expr):
    """Split a FHIRPath expression on `|` at parenthesis depth 0 and outside string literals."""
    parts, cur, depth, quote, i = [], [], 0, None, 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                cur.append(expr[i : i + 2])
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    if depth != 0 or quote:
        die(f"unbalanced expression: {expr}")
    parts.append("".join(cur).strip())
    return parts


def root(part):
    """The leading identifier of an expression part, parentheses skipped."""
    m = re.match(r"\(*\s*([A-Za-z_][A-Za-z0-9_]*)", part)
    return m.group(1) if m else None


def rust_str(s):
    out = ['"']
    for ch in s:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch.isascii() and ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{{{ord(ch):x}}}")
    out.append('"')
    return "".join(out)


def main():
    handout = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared/fhir/r4"
    src = handout / "search-parameters.json"
    types = r4_types()
    type_set = set(types)

    bundle = json.loads(src.read_text())
    defs = [e["resource"] for e in bundle["entry"]]
    by_url = {d["url"]: d for d in defs}
    if len(by_url) != len(defs):
        die("duplicate definition urls")

    # Per type: code -> (definition, restricted expression)
    table = {t: {} for t in types}
    duplicates = []
    unrooted = []
    for d in defs:
        if not d["url"].startswith(URL_PREFIX):
            die(f"unexpected url {d['url']}")
        if d["type"] not in KINDS:
            die(f"unknown type {d['type']} in {d['url']}")
        bases = d["base"]
        parts = split_top(d["expression"]) if d.get("expression") else []
        roots = [root(p) for p in parts]
        for p, r in zip(parts, roots):
            if r not in type_set and r not in COMMON_BASES:
                unrooted.append((d["id"], p))
        for base in bases:
            if base in COMMON_BASES:
                applies = [t for t in types if base == "Resource" or t not in NOT_DOMAIN]
                mine = [p for p, r in zip(parts, roots) if r == base]
            elif base in type_set:
                applies = [base]
                # Parts rooted at the type, plus parts rooted at no type at all (relative to the
                # resource: R4's InsurancePlan-name is `name | alias`).
                mine = [
                    p
                    for p, r in zip(parts, roots)
                    if r == base or (r not in type_set and r not in COMMON_BASES)
                ]
            else:
                die(f"base {base} of {d['url']} is not an R4 type")
            if parts and not mine:
                die(f"{d['url']}: no expression part for base {base}")
            expr = " | ".join(mine)
            for t in applies:
                prev = table[t].get(d["code"])
                if prev is not None:
                    duplicates.append((t, d["code"], prev[0]["url"], d["url"]))
                    # Keep the definition whose base names the type itself.
                    if t in prev[0]["base"] and t not in bases:
                        continue
                table[t][d["code"]] = (d, expr)

    # Every string once, back to back in TEXT; S(at, len) names one (no pointers in the table:
    # a pointer in a static costs a dynamic relocation in the binary, 24 bytes each).
    text = []
    text_at = {}
    text_len = [0]

    def S(v):
        if v not in text_at:
            text_at[v] = text_len[0]
            text.append(v)
            text_len[0] += len(v.encode())
        return f"S({text_at[v]}, {len(v.encode())})"

    # Target lists (indexes into R4_TYPES) and component lists, each once, back to back.
    type_index = {t: i for i, t in enumerate(types)}
    targets_flat = []
    target_at = {}
    comps_flat = []
    comp_at = {}

    def targets_of(d):
        if d["type"] != "reference":
            return "L(0, 0)"
        ts = tuple(type_index[x] for x in d.get("target", []) if x in type_set)
        if not ts:
            return "L(0, 0)"
        if ts not in target_at:
            target_at[ts] = len(targets_flat)
            targets_flat.extend(ts)
        return f"L({target_at[ts]}, {len(ts)})"

    def components_of(d):
        if d["type"] != "composite":
            return "L(0, 0)"
        comps = []
        for c in d["component"]:
            ref = by_url.get(c["definition"])
            if ref is None:
                die(f"{d['url']}: component {c['definition']} not found")
            comps.append((ref["code"], KINDS[ref["type"]], c["expression"]))
        comps = tuple(comps)
        if comps not in comp_at:
            comp_at[comps] = len(comps_flat)
            comps_flat.extend(comps)
        return f"L({comp_at[comps]}, {len(comps)})"

    rows = []  # per type: list of row strings
    offsets = [0]
    for t in types:
        entries = []
        for code in sorted(table[t]):
            d, expr = table[t][code]
            entries.append(
                "    p({}, {}, {}, {}, {}), // {}".format(
                    S(code),
                    KINDS[d["type"]],
                    S(expr),
                    targets_of(d),
                    components_of(d),
                    code,
                )
            )
        rows.append((t, entries))
        offsets.append(offsets[-1] + len(entries))
    total = offsets[-1]
    comp_rows = [
        f"    c({S(code)}, {kind}, {S(expr)}), // {code}" for code, kind, expr in comps_flat
    ]
    target_lists = target_at
    comp_lists = comp_at

    # Compartments.
    param_codes = {t: set(table[t]) for t in types}
    compartments = []
    for name, where in COMPARTMENTS:
        folder = handout if where == "handout" else DATA
        cd = json.loads((folder / f"compartmentdefinition-{name}.json").read_text())
        owner = cd["code"]
        if owner not in type_set:
            die(f"compartment {owner} is not an R4 type")
        members = []
        for r in cd["resource"]:
            params = r.get("param", [])
            if not params:
                continue  # listed without params: not in the compartment
            if r["code"] not in type_set:
                die(f"compartment {owner}: {r['code']} is not an R4 type")
            for p in params:
                if p == "{def}":
                    if r["code"] != owner:
                        die(f"compartment {owner}: {{def}} on {r['code']}")
                    continue
                if p not in param_codes[r["code"]]:
                    die(f"compartment {owner}: {r['code']} has no parameter {p}")
                if table[r["code"]][p][0]["type"] != "reference":
                    die(f"compartment {owner}: {r['code']}.{p} is not a reference")
            members.append((r["code"], params))
        members.sort()
        compartments.append((owner, members))
    compartments.sort()

    out = []
    w = out.append
    w("// @generated by scripts/gen-search-params.py from the HL7 FHIR R4 (4.0.1)")
    w("// search-parameters.json and compartmentdefinition-patient.json (the handout folder) and")
    w("// shared/fhir/r4/compartmentdefinition-{device,encounter,practitioner,relatedperson}.json.")
    w("// Do not edit: change the generator and run it again.")
    w("")
    w("//! The generated R4 search parameter table; `registry` is its interface.")
    w("")
    w("use super::registry::{Component, L, ParamType, S, SearchParam};")
    w("")
    w("/// How many SearchParameter definitions (distinct urls) the table was generated from.")
    w(f"pub(super) const DEFINITIONS: usize = {len(defs)};")
    w("")
    w("/// The types the table is indexed by: `R4_TYPES` when it was generated.")
    w("#[cfg(test)]")
    w(f"pub(super) static TYPES: [&str; {len(types)}] = [")
    for t in types:
        w(f"    {rust_str(t)},")
    w("];")
    w("")
    w("/// The parameters of `TYPES[i]` are `PARAMS[OFFSETS[i] as usize..OFFSETS[i + 1] as usize]`.")
    w(f"pub(super) static OFFSETS: [u16; {len(offsets)}] = [")
    for o in offsets:
        w(f"    {o},")
    w("];")
    w("")
    w("/// Every string of the table (codes, expressions), each once; `S(at, len)` is a byte range.")
    w("#[rustfmt::skip]")
    w("pub(super) static TEXT: &str = concat!(")
    for v in text:
        w(f"    {rust_str(v)},")
    w(");")
    w("")
    w("/// Reference target lists: indexes into `R4_TYPES`; `L(at, len)` is a range.")
    w("#[rustfmt::skip]")
    w(f"pub(super) static TARGETS: [u8; {len(targets_flat)}] = [")
    for i in range(0, len(targets_flat), 24):
        w("    " + ", ".join(str(x) for x in targets_flat[i:i + 24]) + ",")
    w("];")
    w("")
    w("const fn p(code: S, kind: ParamType, expression: S, targets: L, components: L) -> SearchParam {")
    w("    SearchParam { code, kind, expression, targets, components }")
    w("}")
    w("")
    w("const fn c(code: S, kind: ParamType, expression: S) -> Component {")
    w("    Component { code, kind, expression }")
    w("}")
    w("")
    w("use ParamType::*;")
    w("")
    w("/// Composite components, lists back to back; `L(at, len)` is a range.")
    w("#[rustfmt::skip]")
    w(f"pub(super) static COMPONENTS: [Component; {len(comps_flat)}] = [")
    out.extend(comp_rows)
    w("];")
    w("")
    w("/// Every (type, parameter) pair: grouped by type in `TYPES` order, sorted by code.")
    w("#[rustfmt::skip]")
    w(f"pub(super) static PARAMS: [SearchParam; {total}] = [")
    for t, entries in rows:
        w(f"    // {t}")
        out.extend(entries)
    w("];")
    w("")
    w("/// The members of one compartment: (type, codes of the parameters that link it to the owner).")
    w("pub(super) type Members = &'static [(&'static str, &'static [&'static str])];")
    w("")
    w("/// Compartments by owner type; members sorted by type, with the codes of the parameters that")
    w("/// link them to the owner (`{def}`: the owner itself). Types not listed are not members.")
    w("#[rustfmt::skip]")
    w(f"pub(super) static COMPARTMENTS: [(&str, Members); {len(compartments)}] = [")
    for owner, members in compartments:
        w(f"    ({rust_str(owner)}, &[")
        for code, params in members:
            w(f"        ({rust_str(code)}, &[{', '.join(rust_str(p) for p in params)}]),")
        w("    ]),")
    w("];")

    OUT.write_text("\n".join(out) + "\n")
    subprocess.run(["rustfmt", "--edition", "2024", str(OUT)], check=True)

    print(f"{OUT.relative_to(REPO)}: {len(defs)} definitions, {total} (type, parameter) pairs,", file=sys.stderr)
    print(f"  {len(target_lists)} target lists, {len(comp_lists)} component lists,", file=sys.stderr)
    print(f"  compartments: {', '.join(f'{o} ({len(m)} types)' for o, m in compartments)}", file=sys.stderr)
    for t, code, kept_or_prev, new in duplicates:
        print(f"  duplicate code {t}.{code}: {kept_or_prev} and {new}", file=sys.stderr)
    if not duplicates:
        print("  no duplicate codes within a type", file=sys.stderr)
    for i, p in unrooted:
        print(f"  expression part rooted at no type, kept as relative: {i}: {p}", file=sys.stderr)


if __name__ == "__main__":
    main()
