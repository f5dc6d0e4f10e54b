#!/usr/bin/env python3
"""Checks what `meson test` really ran, from its JUnit log (BUILD/meson-logs/testlog.junit.xml).

meson's summary counts a GoogleTest executable as one test: a suite whose cases all skip,
or that lost half its cases, still reads "Ok". This script counts test cases per meson test
and fails when
  * a meson test listed in the expectations did not run at all (its suite vanished, e.g.
    GStreamer or gtest dev files missing),
  * a meson test ran fewer cases than expected (the counts only go up: --update records new
    ones),
  * a case skipped that is not allowed to skip in this build (allowed skips are listed with
    their reason in expected-cases.txt; anything else is a silent hole in CI),
  * a case failed.
It prints every skipped case with its message, so skips are visible in the CI log.

    tests/ci/check-cases.py BUILD [--profile main|sanitized] [--allow-missing-shared] [--update]
"""
import argparse
import fnmatch
import os
import re
import sys
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = os.path.join(HERE, "expected-cases.txt")


def read_expectations():
    counts, allowed = {}, []
    with open(EXPECTED) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            kind, rest = line.split(None, 1)
            if kind == "cases":
                name, n = rest.rsplit(None, 1)
                counts[name] = int(n)
            elif kind == "skip":
                profile, pattern, *why = rest.split(None, 2)
                allowed.append((profile, pattern, why[0] if why else ""))
            else:
                sys.exit(f"{EXPECTED}: unknown line '{raw.rstrip()}'")
    return counts, allowed


def read_junit(build):
    path = os.path.join(build, "meson-logs", "testlog.junit.xml")
    root = ET.parse(path).getroot()
    per_test, skipped, failed = {}, [], []
    for suite in root.iter("testsuite"):
        # "pefm.pefm:core / detector.Detector" -> meson test "core / detector"
        name = suite.get("name", "")
        name = name.split("pefm:", 1)[-1]
        meson_test = name.rsplit(".", 1)[0] if "." in name and " / " in name else name
        # GoogleTest shards of one suite (tests/meson.build): "element / element shard 1 of 2"
        meson_test = re.sub(r" shard \d+ of \d+$", "", meson_test)
        for case in suite.iter("testcase"):
            full = f"{case.get('classname', '')}.{case.get('name', '')}"
            test = meson_test
            if " / " not in test:  # a plain (exit status) test: one case named after it
                test = full = case.get("name", "").split(":", 1)[-1]
            per_test[test] = per_test.get(test, 0) + 1
            s = case.find("skipped")
            if s is not None:
                skipped.append((test, full, (s.get("message") or s.text or "").replace("\n", " ")))
            elif case.get("status", "run") != "run":  # DISABLED_ cases: not run, not skipped
                skipped.append((test, full, f"status {case.get('status')} (disabled)"))
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append((test, full))
    return per_test, skipped, failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--profile", default="main", choices=["main", "sanitized"])
    ap.add_argument("--allow-missing-shared", action="store_true",
                    help="no ../shared on this machine: real-data skips are reported, not failed")
    ap.add_argument("--update", action="store_true", help="raise the recorded counts to what ran")
    a = ap.parse_args()
    counts, allowed = read_expectations()
    per_test, skipped, failed = read_junit(a.build)
    problems = []
    print(f"check-cases ({a.profile}): {sum(per_test.values())} test cases in {len(per_test)} meson tests, "
          f"{len(skipped)} skipped")
    for name in sorted(set(counts) | set(per_test)):
        ran, want = per_test.get(name, 0), counts.get(name)
        note = "" if want is None else f" (expected at least {want})"
        print(f"  {name:28s} {ran:4d} cases{note}")
        # The sanitizer run leaves out the slowest cases that read no outside input
        # (tests/meson.build): full counts are checked on the main build, presence on both.
        if want is not None and ran < (want if a.profile == "main" else 1):
            problems.append(f"{name}: {ran} test cases ran, expected at least {want}"
                            + (" -- the suite did not run at all" if ran == 0 else ""))
    for meson_test, case, message in skipped:
        ok = [why for profile, pattern, why in allowed
              if profile in (a.profile, "any") and fnmatch.fnmatchcase(case, pattern)]
        shared = "PEFM_SHARED_DIR" in message or "../shared" in message
        verdict = "allowed: " + ok[0] if ok else ("no ../shared here" if shared and a.allow_missing_shared else "NOT ALLOWED")
        print(f"  skipped {case} [{meson_test}]: {message[:160]} -- {verdict}")
        if verdict == "NOT ALLOWED":
            problems.append(f"{case} skipped: {message[:200]}")
    for meson_test, case in failed:
        problems.append(f"{case} failed [{meson_test}]")
    if a.update:
        lines = [l for l in open(EXPECTED) if not l.startswith("cases ")]
        merged = {n: max(c, counts.get(n, 0)) for n, c in per_test.items()}
        merged.update({n: c for n, c in counts.items() if n not in merged})
        with open(EXPECTED, "w") as f:
            f.writelines(lines)
            for n in sorted(merged):
                f.write(f"cases {n} {merged[n]}\n")
        print(f"updated {EXPECTED}")
    if problems:
        print("check-cases: FAILED")
        for p in problems:
            print("  " + p)
        return 1
    print("check-cases: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
