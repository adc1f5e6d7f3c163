#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compares two guest-RAM dumps (pmemsave of guest-physical 0..SIZE) page by page.

  ramcmp.py [--whole | --strict-low] [--data-start ADDR] [--data-end ADDR] [--stale-ok N] SRC_DUMP DST_DUMP

The region from --data-start (default 2 MiB) up is where the test guest keeps
its data: every differing page there is reported by address and fails the
check. Below it live the guest's own code, stack and tick counter; there a
difference fails only with --whole (an idle guest), otherwise it is reported
as a note: QEMU before 9.0 under TCG misses writes to such hot pages in its
dirty tracking and delivers them stale (the guest now empties TCG's TLB after
each burst of writes to avoid it; see guest.c, tlb_flush_all). --strict-low
fails on them for a dirtying guest too, without --whole's checks of noise
pages against the first fill: the harness's own test of that avoidance.

The destination dump is also checked against what the guest wrote (see
guest/guest.c): zero and pattern pages up to --data-end (the "end 0x..." the
guest printed), plus a sample of noise pages with --whole (they are rewritten
by a dirtying guest). Two empty or garbage dumps therefore do not pass.

Every differing data page is classified from its contents: a noise page
holding an older generation of what the guest wrote there than the source
holds is "stale" (QEMU did not send its last write; the relay's digests
tell separately whether every byte QEMU sent arrived). --stale-ok N lets up
to N stale pages pass, for investigations of QEMU's dirty tracking (no test
uses it); a page holding none of the guest's generations ("lost or
corrupted") always fails.

Exit 0 if the dumps match, 1 if they differ, 2 on usage or I/O errors.
"""

import struct
import sys

PAGE = 4096
BLOCK = 1 << 20
MAX_LINES = 2000  # differing pages printed; the count is always exact
ZERO = bytes(PAGE)


def mix32(x):
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


def page_class(pfn):
    h = mix32(pfn) % 10
    return "zero" if h < 3 else "pattern" if h < 7 else "noise"


_patterns = {}


def pattern_page(pfn):
    h = mix32(pfn ^ 0x5BD1E995)
    key = (h % 26, h & 3)  # all the page depends on
    page = _patterns.get(key)
    if page is None:
        n = 8 << (h & 3)
        run = bytes(ord("a") + (h + i * 7) % 26 for i in range(n))
        page = _patterns[key] = (run * (PAGE // n + 1))[:PAGE]
    return page


def noise_page(seed):
    x = mix32(seed) | 1
    words = []
    for _ in range(PAGE // 4):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        words.append(x)
    return struct.pack("<%dI" % len(words), *words)


def first_word(seed):
    x = mix32(seed) | 1
    x ^= (x << 13) & 0xffffffff
    x ^= x >> 17
    x ^= (x << 5) & 0xffffffff
    return x & 0xffffffff


def generation(page, pfn, gmax=4000000):
    """The generation of noise page <pfn> that <page> holds (0: the fill), or None."""
    w = struct.unpack_from("<I", page)[0]
    for g in range(gmax):
        seed = pfn if g == 0 else pfn ^ ((g * 0x9e3779b9) & 0xffffffff)
        if first_word(seed) == w:
            return g if page == noise_page(seed) else None
    return None


def parse_int(s):
    return int(s, 0)


def main(argv):
    whole, strict_low, start, end, stale_ok = False, False, 2 << 20, None, 0
    while argv and argv[0].startswith("--"):
        opt = argv.pop(0)
        if opt == "--whole":
            whole = strict_low = True
        elif opt == "--strict-low":
            strict_low = True
        elif opt == "--data-start":
            start = parse_int(argv.pop(0))
        elif opt == "--data-end":
            end = parse_int(argv.pop(0))
        elif opt == "--stale-ok":
            stale_ok = parse_int(argv.pop(0))
        else:
            sys.stderr.write(__doc__)
            return 2
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    try:
        fa, fb = open(argv[0], "rb"), open(argv[1], "rb")
    except OSError as e:
        sys.stderr.write("ramcmp: %s\n" % e)
        return 2
    data_bad = low_bad = printed = stale = 0
    expect_bad = expect_checked = noise_checked = 0
    off = 0
    with fa, fb:
        while True:
            a, b = fa.read(BLOCK), fb.read(BLOCK)
            if len(a) != len(b):
                sys.stderr.write("ramcmp: dumps differ in size near 0x%x\n" % (off + min(len(a), len(b))))
                return 1
            if not a:
                break
            if a != b:
                for p in range(0, len(a), PAGE):
                    if a[p:p + PAGE] == b[p:p + PAGE]:
                        continue
                    addr = off + p
                    if addr >= start:
                        pfn = addr // PAGE
                        ga = gb = None
                        if page_class(pfn) == "noise":
                            ga, gb = generation(a[p:p + PAGE], pfn), generation(b[p:p + PAGE], pfn)
                        if ga is not None and gb is not None and gb < ga:
                            stale += 1
                            kind = ("DIFFERS: stale, holds generation %d where the source has %d "
                                    "(QEMU did not send its last write)" % (gb, ga))
                        else:
                            data_bad += 1
                            kind = "DIFFERS" + (": lost or corrupted (holds none of the guest's writes)"
                                                if gb is None and page_class(pfn) == "noise" else "")
                    else:
                        low_bad += 1
                        kind = "DIFFERS" if strict_low else "note: differs (guest's own area, tolerated)"
                    if printed < MAX_LINES:
                        print("page 0x%09x %s" % (addr, kind))
                        printed += 1
            # the destination against the guest's own generator
            for p in range(0, len(b), PAGE):
                addr = off + p
                if addr < start or (end is not None and addr >= end):
                    continue
                pfn = addr // PAGE
                cls = page_class(pfn)
                if cls == "zero":
                    want = ZERO
                elif cls == "pattern":
                    want = pattern_page(pfn)
                elif whole and pfn % 97 == 0:
                    want = noise_page(pfn)
                    noise_checked += 1
                else:
                    continue
                expect_checked += 1
                if b[p:p + PAGE] != want:
                    expect_bad += 1
                    if printed < MAX_LINES:
                        print("page 0x%09x does not hold what the guest wrote (%s)" % (addr, cls))
                        printed += 1
            off += len(a)
    if off == 0:
        sys.stderr.write("ramcmp: empty dumps\n")
        return 1
    print("ramcmp: %d MiB compared; %d differing pages from 0x%x up (%d more stale, %d of those tolerated), "
          "%d below%s; %d pages checked against the guest's generator (%d noise), %d wrong"
          % (off >> 20, data_bad, start, stale, min(stale, stale_ok), low_bad, "" if strict_low else " (tolerated)",
             expect_checked, noise_checked, expect_bad))
    if data_bad or stale > stale_ok or expect_bad or (strict_low and low_bad) or expect_checked == 0:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
