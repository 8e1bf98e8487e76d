"""Every crate in the build graph has a licence expression satisfied by .ci/deny.toml's `allow` list.

What `cargo deny check licenses` checks, for the licence fields: a crate passes when its SPDX
expression holds with only allowed licences (`A OR B` needs one, `A AND B` both; `A WITH E` passes
when `A WITH E` or `A` is allowed; the legacy `A/B` means `A OR B`). A crate without a `license`
field fails (cargo-deny would read its licence file; none of ours needs that today).

  cargo metadata --format-version 1 --locked --filter-platform TARGET | python3 .ci/check-licenses.py .ci/deny.toml
"""

import json
import re
import sys
import tomllib


def tokens(expr):
    return re.findall(r"\(|\)|[^\s()]+", expr.replace("/", " OR "))


def allowed(expr, allow):
    """Evaluates an SPDX expression: OR binds looser than AND, WITH tighter than both."""
    toks, pos = tokens(expr), [0]

    def peek():
        return toks[pos[0]] if pos[0] < len(toks) else None

    def take():
        pos[0] += 1
        return toks[pos[0] - 1]

    def atom():
        t = take()
        if t == "(":
            v = disj()
            if take() != ")":
                raise ValueError(f"unbalanced parentheses in {expr!r}")
            return v
        if peek() == "WITH":
            take()
            exc = take()
            return f"{t} WITH {exc}" in allow or t in allow
        return t.rstrip("+") in allow

    def conj():
        v = atom()
        while peek() == "AND":
            take()
            v = atom() and v
        return v

    def disj():
        v = conj()
        while peek() == "OR":
            take()
            v = conj() or v
        return v

    result = disj()
    if peek() is not None:
        raise ValueError(f"cannot parse {expr!r}")
    return result


def main():
    with open(sys.argv[1], "rb") as f:
        allow = set(tomllib.load(f)["licenses"]["allow"])
    meta = json.load(sys.stdin)
    in_graph = {n["id"] for n in meta["resolve"]["nodes"]}
    bad, count = [], 0
    for p in meta["packages"]:
        if p["id"] not in in_graph or p["source"] is None:   # our own crate: Apache-2.0, LICENSE
            continue
        count += 1
        lic = p.get("license")
        try:
            ok = bool(lic) and allowed(lic, allow)
        except (ValueError, IndexError) as e:
            ok, lic = False, f"{lic} ({e})"
        if not ok:
            bad.append(f"{p['name']} {p['version']}: {lic or 'no license field'}")
    for b in bad:
        print(f"licence not accepted: {b}", file=sys.stderr)
    if bad:
        sys.exit(f"{len(bad)} of {count} crates fail .ci/deny.toml's allow list")
    print(f"licences: {count} crates, all accepted by {sys.argv[1]}")


if __name__ == "__main__":
    main()
