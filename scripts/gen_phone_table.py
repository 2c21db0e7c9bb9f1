#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Generates and cross-checks src/phone_table.c, the calling-code tables
behind phone_country() and phone_calling_code().

The data comes from libphonenumber's metadata as Debian ships it in
python3-phonenumbers (8.12.57).  The build never runs this script and needs
neither Python nor that package: the generated C file is checked in.  Run it
with Debian's interpreter (/usr/bin/python3), which sees the Debian packages
python3-phonenumbers and python3-regex (partial matching, used to walk
libphonenumber's patterns digit by digit).

  scripts/gen_phone_table.py            rewrite src/phone_table.c
  scripts/gen_phone_table.py --check    exit 1 if src/phone_table.c is not
                                        what this script would write
  scripts/gen_phone_table.py --verify   compile phone_country() from src/ into
                                        a probe and compare it with
                                        libphonenumber on every calling code,
                                        every example number, every NANP area
                                        code and random valid numbers

How a shared calling code is split.  libphonenumber's
region_code_for_number() tries the regions of a code in order: a region with
"leading digits" takes a national number those digits match; any other takes
it when the number is valid there; the first wins, and a number valid nowhere
has no region.  We want a table a C lookup can walk cheaply: for each shared
code, a prefix-free set of leading digits of the national number, each naming
a region, with the main region for everything else.  For every possible
national-number length L the walk below grows prefixes digit by digit and asks
libphonenumber's patterns (by partial matching) which regions could still
take a number that starts so; it stops where only one can, or where the first
candidate provably takes all of them.  The per-length answers are merged and
must agree.  Numbers valid nowhere go to the region of the prefix they fall
under, or to the main region: dlrd labels traffic, it does not validate.

NANP (+1) numbers are ten digits, and the area code decides: the walk at
L = 10 must end in whole area codes.  It also yields "+1 8001" -> DO (the
Dominican leading digits 8001, which US toll-free 800 cannot take because an
exchange never starts with 0 or 1); no dialable number has that shape, so it
is dropped and 800 stays US.

SUPPLEMENT lists what the metadata does not know and we add on purpose; each
entry is a range where libphonenumber 8.12.57 has no valid number at all (the
--verify run checks that), so it cannot contradict it.
"""

import argparse
import itertools
import os
import random
import re._parser as sre_parse
import subprocess
import sys
import tempfile

import phonenumbers
import regex
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata
from phonenumbers.phonenumberutil import PhoneNumberType, _number_type_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src", "phone_table.c")
SUB_DIGITS_MAX = 7  # PHONE__SUB_DIGITS in src/phone_table.h
DEBIAN_PACKAGE = "python3-phonenumbers 8.12.57"

# (calling code, leading digits of the national number, region, why)
SUPPLEMENT = [
    (1, "257", "CA", "British Columbia overlay (CNAC), after the metadata"),
    (1, "354", "CA", "Quebec 450/579 overlay (CNAC), after the metadata"),
    (1, "382", "CA", "Ontario 519/226/548 overlay (CNAC), after the metadata"),
    (1, "428", "CA", "New Brunswick 506 overlay (CNAC), after the metadata"),
    (1, "683", "CA", "Ontario 705/249 overlay (CNAC), after the metadata"),
    (1, "879", "CA", "Newfoundland and Labrador 709 overlay (CNAC), after the metadata"),
    (1, "942", "CA", "Toronto 416/647/437 overlay (CNAC), after the metadata"),
    (7, "6", "KZ", "zone 7 6xx is allocated to Kazakhstan; no valid numbers in the metadata"),
]

TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager",
         "uan", "voicemail", "fixed_line", "mobile")
DIGITS = "0123456789"


class Region:
    """One region's metadata, with the two questions the walk asks."""

    def __init__(self, code):
        self.code = code
        self.md = PhoneMetadata.metadata_for_region(code)
        g = self.md.general_desc
        self.leading = (regex.compile(self.md.leading_digits)
                        if self.md.leading_digits is not None else None)
        self.general = regex.compile(g.national_number_pattern)
        self.lengths = set(g.possible_length)
        self.types = []
        for t in TYPES:
            d = getattr(self.md, t)
            if d is None or d.national_number_pattern is None:
                continue
            lens = set(d.possible_length) or self.lengths
            self.types.append((regex.compile(d.national_number_pattern), lens))

    def takes(self, nn):
        """libphonenumber's own test in _region_code_for_number_from_list."""
        if self.leading is not None:
            return self.leading.match(nn) is not None
        return _number_type_helper(nn, self.md) != PhoneNumberType.UNKNOWN

    def state(self, p, length):
        """Whether this region may take some L-digit national number that
        starts with p: None (no), 'maybe', or 'sure' (all of them)."""
        if self.leading is not None:
            m = self.leading.match(p, partial=True)
            if m is None:
                return None
            return "maybe" if m.partial else "sure"
        if length not in self.lengths:
            return None
        if len(p) == length:
            return "sure" if self.takes(p) else None
        if self.general.fullmatch(p, partial=True) is None:
            return None
        for rx, lens in self.types:
            if length in lens and rx.fullmatch(p, partial=True) is not None:
                return "maybe"
        return None


def takes_all(region, p, length, rnd):
    """True when region takes every L-digit number starting with p: the next
    four digits exhaustively, a random tail after them (libphonenumber's
    patterns branch on leading digits and end in \\d{n})."""
    k = length - len(p)
    head = min(k, 4)
    for h in itertools.product(DIGITS, repeat=head):
        tail = "".join(rnd.choice(DIGITS) for _ in range(k - head))
        if not region.takes(p + "".join(h) + tail):
            return False
    return True


def walk(regions, length, rnd):
    """Prefix -> region for the non-main regions of one shared code, for
    national numbers of the given length."""
    main = regions[0].code
    out = {}
    stack = [""]
    while stack:
        p = stack.pop()
        cands = []
        settled = False
        for i, r in enumerate(regions):
            st = r.state(p, length)
            if st is None:
                continue
            cands.append(r)
            if st == "sure":
                settled = True
                break
            later = any(x.state(p, length) for x in regions[i + 1:])
            if r.leading is None and later and takes_all(r, p, length, rnd):
                settled = True
                break
        if not any(c.code != main for c in cands):
            continue
        if len(cands) == 1 and (settled or cands[0].leading is None):
            out[p] = cands[0].code
            continue
        if len(p) >= length:
            raise SystemExit(f"ambiguous at {p!r} (L={length}): {[c.code for c in cands]}")
        stack.extend(p + d for d in reversed(DIGITS))
    return out


def nests(a, b):
    return a.startswith(b) or b.startswith(a)


def split_shared(cc, rnd, notes):
    """Leading digits -> region for one shared calling code."""
    regions = [Region(r) for r in COUNTRY_CODE_TO_REGION_CODE[cc]]
    if cc == 1:
        lengths = [10]
    else:
        lengths = sorted(set().union(*(r.lengths for r in regions)))
    merged = {}
    for length in lengths:
        for p, reg in walk(regions, length, rnd).items():
            if p in merged:
                if merged[p] != reg:
                    raise SystemExit(f"+{cc} {p}: {merged[p]} or {reg} by length")
                continue
            for q in merged:
                if nests(p, q):
                    raise SystemExit(f"+{cc}: {p}->{reg} and {q}->{merged[q]} overlap")
            merged[p] = reg
    if cc == 1:
        for p in sorted(merged):
            if len(p) > 3:
                if p[3] not in "01":
                    raise SystemExit(f"+1 {p}: area code does not decide")
                notes.append(f"+1 {p} -> {merged[p]} dropped: no exchange starts with {p[3]}")
                del merged[p]
            elif len(p) < 3:
                reg = merged.pop(p)
                for rest in itertools.product(DIGITS, repeat=3 - len(p)):
                    merged[p + "".join(rest)] = reg
    return merged


def build():
    """[(code, main region or '', [(digits, region, comment)])], notes"""
    rnd = random.Random(20221017)
    notes = []
    table = []
    for cc in sorted(COUNTRY_CODE_TO_REGION_CODE):
        regs = COUNTRY_CODE_TO_REGION_CODE[cc]
        main = phonenumbers.region_code_for_country_code(cc)
        main = "" if main in ("001", "ZZ") else main
        subs = {}
        if len(regs) > 1:
            subs = {p: (r, "") for p, r in split_shared(cc, rnd, notes).items()}
        for scc, p, r, why in SUPPLEMENT:
            if scc != cc:
                continue
            for q in subs:
                if nests(p, q):
                    raise SystemExit(f"supplement +{cc} {p} overlaps {q}")
            subs[p] = (r, why)
        rows = sorted((p, r, why) for p, (r, why) in subs.items())
        for p, _, _ in rows:
            if len(p) > SUB_DIGITS_MAX:
                raise SystemExit(f"+{cc} {p}: longer than PHONE__SUB_DIGITS")
        table.append((cc, main, rows))
    return table, notes


def render(table):
    ncodes = len(table)
    nsubs = sum(len(rows) for _, _, rows in table)
    shared = sum(1 for _, _, rows in table if rows)
    out = []
    w = out.append
    w("/* SPDX-License-Identifier: MIT */")
    w("/*")
    w(" * GENERATED by scripts/gen_phone_table.py; do not edit by hand (run it and")
    w(" * commit the result; --check tells whether this file is current).")
    w(" *")
    w(" * The ITU-T E.164 country calling codes and, where regions share a code, the")
    w(" * leading digits of the national number that pick each region.  Source:")
    w(f" * libphonenumber metadata {phonenumbers.__version__} as shipped by Debian's {DEBIAN_PACKAGE}")
    w(" * (COUNTRY_CODE_TO_REGION_CODE; main region as region_code_for_country_code;")
    w(" * the other regions from their leading digits or number patterns, walked")
    w(" * per number length; NANP split by area code).  A few ranges the metadata")
    w(" * does not know are added by hand in the script (SUPPLEMENT) and marked")
    w(" * below.  scripts/gen_phone_table.py --verify compares phone_country()")
    w(" * with libphonenumber itself.")
    w(" *")
    w(f" * {ncodes} calling codes, {shared} of them shared, {nsubs} leading-digit entries.")
    w(" */")
    w('#include "phone_table.h"')
    w("")
    w("#include \"util.h\"")
    w("")
    w("/* Sorted by calling code, then digits; prefix-free within a code. */")
    w("const struct phone__sub phone__subs[] = {")
    for cc, main, rows in table:
        if not rows:
            continue
        w(f"\t/* +{cc} (default {main}) */")
        for p, r, why in rows:
            line = f'\t{{"{p}", "{r}"}},'
            if why:
                line += f" /* {why} */"
            w(line)
    w("};")
    w("const size_t phone__nsubs = ARRAY_LEN(phone__subs);")
    w("")
    w("/* Sorted by code; no code's digits begin another's (ITU-T E.164).  Region \"\"")
    w(" * marks the non-geographic codes (+800, +882, ...). */")
    w("const struct phone__cc phone__ccs[] = {")
    off = 0
    for cc, main, rows in table:
        w(f'\t{{{cc}, "{main}", {off}, {len(rows)}}},')
        off += len(rows)
    w("};")
    w("const size_t phone__nccs = ARRAY_LEN(phone__ccs);")
    return "\n".join(out) + "\n"


def clang_format(text):
    try:
        r = subprocess.run(["clang-format", "--assume-filename=" + OUT], input=text,
                           capture_output=True, text=True, cwd=ROOT, check=True)
        return r.stdout
    except (OSError, subprocess.CalledProcessError):
        return text


# --- verification against libphonenumber -----------------------------------

PROBE_C = r"""
#include <stdio.h>
#include <string.h>
#include "phone.h"
int main(void)
{
	char line[64], cc[4];
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = '\0';
		const char *c = phone_country(line);
		phone_calling_code(line, cc);
		printf("%s %s\n", c ? c : "-", cc[0] ? cc : "-");
	}
	return 0;
}
"""

CRYPTO_STUB_C = r"""
#include "crypto.h"
#include <stdlib.h>
void crypto_hmac(enum crypto_md md, const void *key, size_t keylen,
		 const struct crypto_piece *pieces, size_t npieces, uint8_t *out)
{
	(void)md; (void)key; (void)keylen; (void)pieces; (void)npieces; (void)out;
	abort();
}
void crypto_hex(const uint8_t *p, size_t n, char *out) { (void)p; (void)n; (void)out; abort(); }
"""


def compile_probe(tmp):
    src = os.path.join(tmp, "probe.c")
    with open(src, "w") as f:
        f.write(PROBE_C)
    stub = os.path.join(tmp, "crypto_stub.c")
    with open(stub, "w") as f:
        f.write(CRYPTO_STUB_C)
    exe = os.path.join(tmp, "probe")
    cmd = ["gcc", "-std=c17", "-D_GNU_SOURCE", "-O1", "-I" + os.path.join(ROOT, "src"), src,
           os.path.join(ROOT, "src", "phone.c"), os.path.join(ROOT, "src", "phone_table.c"),
           stub, "-o", exe]
    subprocess.run(cmd, check=True)
    return exe


def probe(exe, numbers):
    r = subprocess.run([exe], input="".join(n + "\n" for n in numbers), capture_output=True,
                       text=True, check=True)
    res = []
    for line in r.stdout.splitlines():
        c, cc = line.split(" ")
        res.append((None if c == "-" else c, "" if cc == "-" else cc))
    return res


def sample(pattern, rnd):
    """A random string matching a libphonenumber pattern (digits only)."""
    def gen(items):
        s = []
        for op, av in items:
            name = str(op)
            if name == "LITERAL":
                s.append(chr(av))
            elif name == "IN":
                choices = []
                for iop, iav in av:
                    iname = str(iop)
                    if iname == "LITERAL":
                        choices.append(chr(iav))
                    elif iname == "RANGE":
                        choices.extend(chr(c) for c in range(iav[0], iav[1] + 1))
                    elif iname == "CATEGORY":
                        choices.extend(DIGITS)
                    else:
                        raise ValueError(iname)
                s.append(rnd.choice(choices))
            elif name == "BRANCH":
                s.append(gen(rnd.choice(av[1])))
            elif name == "SUBPATTERN":
                s.append(gen(av[-1]))
            elif name in ("MAX_REPEAT", "MIN_REPEAT"):
                lo, hi, sub = av
                hi = min(hi, lo + 4)
                s.extend(gen(sub) for _ in range(rnd.randint(lo, hi)))
            elif name == "CATEGORY":
                s.append(rnd.choice(DIGITS))
            else:
                raise ValueError(name)
        return "".join(s)
    return gen(sre_parse.parse(pattern))


NONGEO = "non-geographic"


def lib_region(number):
    """libphonenumber's region for number: a region code, NONGEO, or None
    when the number is valid nowhere."""
    try:
        r = phonenumbers.region_code_for_number(phonenumbers.parse(number))
    except phonenumbers.NumberParseException:
        return None
    if r == "001":
        return NONGEO
    return None if r in (None, "ZZ") else r


def dropped_by_design(cc, nn):
    """Numbers where the table departs from libphonenumber on purpose: more
    than 15 digits is not E.164; a NANP number has ten digits and its area
    code decides (see the module comment)."""
    if len(str(cc)) + len(nn) > 15:
        return "not E.164 (over 15 digits)"
    if cc == 1 and len(nn) != 10:
        return "NANP, not 10 digits"
    if cc == 1 and nn[3] in "01":
        return "NANP, exchange starts with 0 or 1"
    return None


def verify(table, per_type):
    """Compares the compiled phone_country()/phone_calling_code() with
    libphonenumber; prints counts and every mismatch; True when none."""
    rnd = random.Random(1)
    cases = []  # (kind, cc, national number)

    # 1. every calling code on its own: its main region
    for cc, _, _ in table:
        cases.append(("code", cc, ""))
    # 2. the example number and random valid numbers of every region and type
    for cc in sorted(COUNTRY_CODE_TO_REGION_CODE):
        shared = len(COUNTRY_CODE_TO_REGION_CODE[cc]) > 1
        for reg in COUNTRY_CODE_TO_REGION_CODE[cc]:
            if reg == "001":
                md = PhoneMetadata.metadata_for_nongeo_region(cc)
            else:
                md = PhoneMetadata.metadata_for_region(reg)
            for t in TYPES:
                d = getattr(md, t)
                if d is None or d.national_number_pattern is None:
                    continue
                nns = [d.example_number] if d.example_number else []
                lens = set(d.possible_length) or set(md.general_desc.possible_length)
                want = per_type if shared else 3
                for _ in range(want * 20):
                    if len(nns) > want:
                        break
                    nn = sample(d.national_number_pattern, rnd)
                    if len(nn) in lens:
                        nns.append(nn)
                cases.extend(("type", cc, nn) for nn in nns)
    # 3. every NANP area code, with exchanges of every leading digit
    for npa in range(200, 1000):
        for x in "23456789":
            cases.append(("nanp", 1, f"{npa}{x}{rnd.randint(0, 99):02d}{rnd.randint(0, 9999):04d}"))
    # 4. the supplement: random numbers in each range
    for cc, p, _, _ in SUPPLEMENT:
        for _ in range(500):
            rest = "".join(rnd.choice(DIGITS) for _ in range(10 - len(p)))
            cases.append(("supplement", cc, p + rest))

    with tempfile.TemporaryDirectory() as tmp:
        got = probe(compile_probe(tmp), [f"+{cc}{nn}" for _, cc, nn in cases])

    stats = {}
    bad = []
    design = {}
    nanp = {}  # area code -> (libphonenumber regions, ours)
    for (kind, cc, nn), (region, code) in zip(cases, got):
        st = stats.setdefault(kind, {"numbers": 0, "agree": 0, "valid nowhere": 0})
        st["numbers"] += 1
        num = f"+{cc}{nn}"
        why = dropped_by_design(cc, nn) if nn else None
        if why:
            design[why] = design.get(why, 0) + 1
            continue
        if code != str(cc):
            bad.append(f"{kind} {num}: calling code {code!r}, want {cc}")
            continue
        if kind == "code":
            want = phonenumbers.region_code_for_country_code(cc)
            want = NONGEO if want == "001" else want
        else:
            want = lib_region(num)
        if kind == "nanp":
            libs, ours = nanp.setdefault(nn[:3], (set(), set()))
            ours.add(region)
            if want is not None:
                libs.add(want)
        if want is None:
            st["valid nowhere"] += 1  # any answer is ours to give
            continue
        if region != (None if want == NONGEO else want):
            bad.append(f"{kind} {num}: {region}, libphonenumber {want}")
            continue
        st["agree"] += 1

    for kind, st in stats.items():
        print(f"{kind}: " + ", ".join(f"{v} {k}" for k, v in st.items()))
    for why, n in sorted(design.items()):
        print(f"not compared by design: {n} numbers ({why})")
    known = sum(1 for libs, _ in nanp.values() if libs)
    split = [a for a, (libs, ours) in nanp.items() if len(libs) > 1 or len(ours) > 1]
    print(f"nanp: {len(nanp)} area codes; {known} with valid numbers in libphonenumber, "
          f"all agreeing unless listed below; {len(split)} split between regions {split}")
    extra = sorted(f"{a}->{'/'.join(sorted(map(str, ours)))}" for a, (libs, ours) in nanp.items()
                   if not libs and ours != {"US"})
    print(f"nanp: area codes with no valid number in libphonenumber that we do not call US: "
          f"{extra}")
    for b in bad:
        print("MISMATCH", b)
    print(f"{len(bad)} mismatches")
    return not bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if src/phone_table.c is stale")
    ap.add_argument("--verify", action="store_true", help="compare the C lookup with libphonenumber")
    ap.add_argument("--per-type", type=int, default=300,
                    help="random numbers per type and region of a shared code (--verify)")
    args = ap.parse_args()

    table, notes = build()
    for n in notes:
        print("note:", n, file=sys.stderr)
    text = clang_format(render(table))
    if args.check or args.verify:
        with open(OUT) as f:
            current = f.read()
        if current != text:
            print(f"{OUT} is stale: run scripts/gen_phone_table.py", file=sys.stderr)
            return 1
        print(f"{os.path.relpath(OUT, ROOT)} is current")
        if args.verify and not verify(table, args.per_type):
            return 1
        return 0
    with open(OUT, "w") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(OUT, ROOT)}: {len(table)} calling codes, "
          f"{sum(len(r) for _, _, r in table)} leading-digit entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
