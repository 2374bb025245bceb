#!/usr/bin/env python3
"""stats_check.py: Galleon's malloc_info, malloc_stats, heap dump and GALLEON_OPTIONS,
parsed and checked (tests/stats).

  stats_check.py PROBE GLIBC_REFERENCE CASE

PROBE is stats_probe (linked with Galleon), GLIBC_REFERENCE glibc_reference (the
system malloc).  CASE:
  malloc_info   the XML parses (xml.etree), has glibc's element and attribute
                layout (taken from GLIBC_REFERENCE's own output), its totals add up,
                agree with mallinfo2, and freeing 200 blocks of 100 B and 5 of
                20000 B raises the free count of exactly those classes by 200 and 5
  malloc_stats  glibc's line layout (the same parser reads GLIBC_REFERENCE's
                output), the totals agree with mallinfo2 and "max mmap regions" is
                the most large blocks alive at once (5)
  heap_dump     galleon_dump_pages's JSON parses and agrees with the pattern (40
                blocks of 7000 B in use) and with mallinfo2
  options       GALLEON_OPTIONS: name:value and name=value items, suffixes and
                switches, GALLEON_<NAME> winning over the list, one warning per bad
                item, stats_at_exit:json printing JSON at exit
Exit status 0 when every check holds; otherwise a message and status 1.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

DIRECT_MAX = 8192  # the fast classes: blocks up to 8 KiB (GL_DIRECT_MAX)


class CheckFailed(Exception):
    pass


def check(cond, message):
    if not cond:
        raise CheckFailed(message)


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALLEON_")}
    env.update(extra or {})
    return env


def run(cmd, env=None):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or clean_env(),
                       universal_newlines=True, timeout=120)
    check(r.returncode == 0, "%s exited with %d\nstdout:\n%s\nstderr:\n%s" % (" ".join(cmd), r.returncode,
                                                                          r.stdout, r.stderr))
    return r


# ---- malloc_info ----

# glibc 2.35 and later add <aspace type="subheaps"> to thread arenas (not to the main
# arena); Galleon gives it for every heap: its number of segments.
HEAP_TAIL = [("total", "fast"), ("total", "rest"), ("system", "current"), ("system", "max"),
             ("aspace", "total"), ("aspace", "mprotect"), ("aspace", "subheaps")]
ROOT_TAIL = [("total", "fast"), ("total", "rest"), ("total", "mmap"), ("system", "current"),
             ("system", "max"), ("aspace", "total"), ("aspace", "mprotect")]


def layout(root):
    """The shape of a malloc_info document: what glibc's and Galleon's must share."""
    check(root.tag == "malloc", "root element is <%s>, not <malloc>" % root.tag)
    heaps = [c for c in root if c.tag == "heap"]
    tail = [(c.tag, c.get("type")) for c in root if c.tag != "heap"]
    check(all(c.tag == "heap" for c in list(root)[:len(heaps)]), "<heap> elements do not come first")
    heap_shapes = set()
    size_attrs = set()
    for h in heaps:
        children = list(h)
        check(children and children[0].tag == "sizes", "<heap nr=%s> does not start with <sizes>" % h.get("nr"))
        for s in children[0]:
            check(s.tag in ("size", "unsorted"), "<sizes> holds <%s>" % s.tag)
            size_attrs.add(tuple(sorted(s.attrib)))
        heap_shapes.add((tuple(sorted(h.attrib)), tuple((c.tag, c.get("type")) for c in children[1:])))
    return {"version": root.get("version"), "heaps": len(heaps), "tail": tail, "heap_shapes": heap_shapes,
            "size_attrs": size_attrs}


def num(e, attr):
    v = e.get(attr)
    check(v is not None and re.fullmatch(r"\d+", v), "<%s> has %s=%r" % (e.tag, attr, v))
    return int(v)


def typed(parent, tag, type_):
    found = [c for c in parent if c.tag == tag and c.get("type") == type_]
    check(len(found) == 1, "%d <%s type=%s> in <%s>" % (len(found), tag, type_, parent.tag))
    return found[0]


def class_count(root, block):
    """Free blocks of the class whose block size is `block`, over all heaps."""
    return sum(num(s, "count") for h in root.findall("heap") for s in h.find("sizes")
               if s.tag == "size" and num(s, "to") == block)


def check_info_document(root, mi, name):
    nrs = [num(h, "nr") for h in root.findall("heap")]
    check(nrs == list(range(len(nrs))), "%s: heap numbers %s" % (name, nrs))
    fast_count = fast_size = rest_count = rest_size = system = 0
    for h in root.findall("heap"):
        hf_c = hf_s = hr_c = hr_s = 0
        last_to = -1
        for s in h.find("sizes"):
            f, t, total, count = num(s, "from"), num(s, "to"), num(s, "total"), num(s, "count")
            check(count > 0 and f <= t, "%s: heap %s: %s" % (name, h.get("nr"), ET.tostring(s)))
            if s.tag == "size":
                check(total == count * t, "%s: heap %s: total != count x block size: %s" %
                      (name, h.get("nr"), ET.tostring(s)))
                check(t > last_to, "%s: heap %s: size classes out of order" % (name, h.get("nr")))
                last_to = t
            if s.tag == "size" and t <= DIRECT_MAX:
                hf_c, hf_s = hf_c + count, hf_s + total
            else:
                hr_c, hr_s = hr_c + count, hr_s + total
        fast, rest = typed(h, "total", "fast"), typed(h, "total", "rest")
        check((num(fast, "count"), num(fast, "size")) == (hf_c, hf_s),
              "%s: heap %s: fast total %s, sizes say %d/%d" % (name, h.get("nr"), fast.attrib, hf_c, hf_s))
        check((num(rest, "count"), num(rest, "size")) == (hr_c, hr_s),
              "%s: heap %s: rest total %s, sizes say %d/%d" % (name, h.get("nr"), rest.attrib, hr_c, hr_s))
        current = num(typed(h, "system", "current"), "size")
        check(num(typed(h, "system", "max"), "size") >= current, "%s: heap max < current" % name)
        check(num(typed(h, "aspace", "total"), "size") == current, "%s: aspace total != system" % name)
        check(current == (4 << 20) * num(typed(h, "aspace", "subheaps"), "size"),
              "%s: heap %s: %d bytes in %s segments" % (name, h.get("nr"), current,
                                                        typed(h, "aspace", "subheaps").get("size")))
        fast_count, fast_size = fast_count + hf_c, fast_size + hf_s
        rest_count, rest_size = rest_count + hr_c, rest_size + hr_s
        system += current
    fast, rest, mmap = typed(root, "total", "fast"), typed(root, "total", "rest"), typed(root, "total", "mmap")
    check((num(fast, "count"), num(fast, "size")) == (fast_count, fast_size), "%s: process fast total" % name)
    check((num(fast, "count"), num(fast, "size")) == (mi["smblks"], mi["fsmblks"]),
          "%s: fast total %s, mallinfo2 smblks %d fsmblks %d" % (name, fast.attrib, mi["smblks"], mi["fsmblks"]))
    check(num(rest, "count") == mi["ordblks"] and num(rest, "count") >= rest_count,
          "%s: rest count %s, heaps %d, ordblks %d" % (name, rest.get("count"), rest_count, mi["ordblks"]))
    check(num(rest, "size") >= rest_size, "%s: rest size below the heaps' sum" % name)
    check((num(mmap, "count"), num(mmap, "size")) == (mi["hblks"], mi["hblkhd"]),
          "%s: mmap total %s, mallinfo2 hblks %d hblkhd %d" % (name, mmap.attrib, mi["hblks"], mi["hblkhd"]))
    current = num(typed(root, "system", "current"), "size")
    check(current == mi["arena"] and current >= system, "%s: system current %d, arena %d, heaps %d" %
          (name, current, mi["arena"], system))
    check(num(typed(root, "system", "max"), "size") >= current, "%s: system max < current" % name)
    check(mi["fsmblks"] + num(rest, "size") <= mi["fordblks"], "%s: free chunks exceed fordblks" % name)


def case_malloc_info(probe, reference):
    glibc_root = ET.fromstring(run([reference, "info"]).stdout)
    glibc = layout(glibc_root)
    check(glibc["version"] == "1" and glibc["heaps"] >= 2, "glibc's reference output: %s" % glibc)
    with tempfile.TemporaryDirectory() as d:
        a_path, b_path = os.path.join(d, "a.xml"), os.path.join(d, "b.xml")
        out = json.loads(run([probe, "info", a_path, b_path]).stdout)
        docs = {}
        for name, path in (("a", a_path), ("b", b_path)):
            with open(path) as f:
                text = f.read()
            check(text.startswith('<malloc version="1">\n'), "%s.xml starts %r" % (name, text[:40]))
            docs[name] = ET.fromstring(text)  # raises on malformed XML
    for name, root in docs.items():
        mine = layout(root)
        check(mine["version"] == glibc["version"], "version %s, glibc %s" % (mine["version"], glibc["version"]))
        check(mine["tail"] == glibc["tail"] == ROOT_TAIL, "process totals %s, glibc %s" % (mine["tail"], glibc["tail"]))
        check(mine["heap_shapes"] == {(("nr",), tuple(HEAP_TAIL))} and mine["heap_shapes"] <= glibc["heap_shapes"],
              "heap layout %s, glibc %s" % (mine["heap_shapes"], glibc["heap_shapes"]))
        check(mine["size_attrs"] <= glibc["size_attrs"] == {("count", "from", "to", "total")},
              "<size> attributes %s, glibc %s" % (mine["size_attrs"], glibc["size_attrs"]))
        check(out[name + "_before"] == out[name + "_after"], "malloc_info changed the heap (%s)" % name)
        check_info_document(root, out[name + "_before"], name + ".xml")
    check(out["a_before"]["hblks"] == out["large_blocks"], "mallinfo2 hblks %d, the probe holds %d large blocks"
          % (out["a_before"]["hblks"], out["large_blocks"]))
    for kind in ("small", "medium"):
        block, freed = out[kind + "_block"], out[kind + "_freed"]
        a, b = class_count(docs["a"], block), class_count(docs["b"], block)
        check(b - a == freed, "%d blocks of %d B freed: the class %d entry went %d -> %d" %
              (freed, out[kind + "_size"], block, a, b))
        print("  malloc_info: freeing %d blocks of %d B: free count of class ..%d: %d -> %d" %
              (freed, out[kind + "_size"], block, a, b))
    print("  malloc_info: glibc's layout, totals consistent with mallinfo2")


# ---- malloc_stats ----

LINE = "{label:<16} = {value:>10}"


def parse_malloc_stats(text, who):
    """glibc's malloc_stats layout: Arena N blocks, then the totals.  Returns
    (arenas as [(n, system, in_use)], totals dict, the lines after the totals)."""
    lines = text.split("\n")
    i = 0
    arenas = []

    def field(label):
        nonlocal i
        check(i < len(lines), "%s: malloc_stats ends before %r" % (who, label))
        m = re.fullmatch(r"(.{16}) = ( *\d+)", lines[i])
        check(m and m.group(1).rstrip() == label and len(m.group(2)) >= 10,
              "%s: line %d is %r, expected %r" % (who, i + 1, lines[i], LINE.format(label=label, value="N")))
        i += 1
        return int(m.group(2))

    while i < len(lines) and lines[i].startswith("Arena "):
        m = re.fullmatch(r"Arena (\d+):", lines[i])
        check(m, "%s: line %d is %r" % (who, i + 1, lines[i]))
        i += 1
        arenas.append((int(m.group(1)), field("system bytes"), field("in use bytes")))
    check(i < len(lines) and lines[i] == "Total (incl. mmap):", "%s: line %d is %r, expected the totals" %
          (who, i + 1, lines[i] if i < len(lines) else None))
    i += 1
    totals = {"system": field("system bytes"), "in_use": field("in use bytes"),
              "max_regions": field("max mmap regions"), "max_bytes": field("max mmap bytes")}
    return arenas, totals, lines[i:]


def case_malloc_stats(probe, reference):
    g_arenas, g_totals, g_rest = parse_malloc_stats(run([reference, "stats"]).stderr, "glibc")
    check(len(g_arenas) >= 2 and [a[0] for a in g_arenas] == list(range(len(g_arenas))),
          "glibc's reference output has arenas %s" % g_arenas)
    r = run([probe, "stats"])
    out = json.loads(r.stdout)
    check(out["before"] == out["after"], "malloc_stats changed the heap")
    mi = out["before"]
    arenas, totals, rest = parse_malloc_stats(r.stderr, "galleon")
    check([a[0] for a in arenas] == list(range(len(arenas))) and len(arenas) >= 2,
          "arenas %s: one per heap, numbered from 0 (the probe made 2 heaps)" % arenas)
    check(sum(a[2] for a in arenas) == mi["uordblks"], "arenas in use %d, uordblks %d" %
          (sum(a[2] for a in arenas), mi["uordblks"]))
    check(sum(a[1] for a in arenas) <= mi["arena"], "arenas system bytes above mallinfo2 arena")
    check(all(a[1] % (4 << 20) == 0 for a in arenas), "arena system bytes not whole segments: %s" % arenas)
    check(totals["system"] == mi["arena"] + mi["hblkhd"], "total system %d, arena + hblkhd %d" %
          (totals["system"], mi["arena"] + mi["hblkhd"]))
    check(totals["in_use"] == mi["uordblks"] + mi["hblkhd"], "total in use %d, uordblks + hblkhd %d" %
          (totals["in_use"], mi["uordblks"] + mi["hblkhd"]))
    peak = out["large_peak_blocks"]
    check(totals["max_regions"] == peak, "max mmap regions %d: the probe had %d large blocks alive at once"
          % (totals["max_regions"], peak))
    block = out["large_block"]
    check(peak * block <= totals["max_bytes"] <= peak * (block + 64 * 1024),
          "max mmap bytes %d for %d blocks of %d B" % (totals["max_bytes"], peak, block))
    check(mi["hblks"] == 2, "hblks %d after freeing 3 of 5 large blocks" % mi["hblks"])
    check(rest and rest[0].startswith("galleon "), "after glibc's lines: %r" % rest[:1])
    print("  malloc_stats: glibc's layout, %d arenas, totals = mallinfo2, max mmap regions %d" %
          (len(arenas), totals["max_regions"]))


# ---- galleon_dump_pages ----

def case_heap_dump(probe, reference):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "heap.json")
        out = json.loads(run([probe, "dump", path]).stdout)
        with open(path) as f:
            dump = json.load(f)
    check(out["before"] == out["after"], "galleon_dump_pages changed the heap")
    mi = out["before"]
    check(dump.get("format") == "heap" and re.fullmatch(r"\d+\.\d+\.\d+", dump.get("galleon", "")),
          "dump header %s" % {k: dump.get(k) for k in ("galleon", "format")})
    nrs = [h["nr"] for h in dump["heaps"]]
    check(nrs == sorted(set(nrs)) and sum(1 for h in dump["heaps"] if h["self"]) == 1,
          "heaps %s" % [(h["nr"], h["self"]) for h in dump["heaps"]])
    used_bytes = mapped = used_of_class = 0
    for h in dump["heaps"]:
        check(h["state"] in ("active", "abandoned"), "heap state %r" % h["state"])
        for seg in h["segments"]:
            check(seg["kind"] in ("small", "medium") and re.fullmatch(r"0x[0-9a-f]+", seg["address"]),
                  "segment %s" % {k: seg[k] for k in ("kind", "address")})
            check(len(seg["pages"]) == (64 if seg["kind"] == "small" else 8), "%d pages in a %s segment" %
                  (len(seg["pages"]), seg["kind"]))
            check(seg["mapped"] == dump["segment_size"], "segment of %d bytes" % seg["mapped"])
            check(0 < seg["resident"] <= seg["mapped"], "segment resident %d" % seg["resident"])
            mapped += seg["mapped"]
            # Resident bytes (mincore): whole OS pages, within the page's memory; a
            # clean page is purged (MADV_DONTNEED by default) or never touched; a page
            # in use has carved blocks, whose links sit in them.
            pages_resident = 0
            for p in seg["pages"]:
                check(p["state"] in ("in_use", "dirty", "clean"), "page state %r" % p["state"])
                check(0 <= p["resident"] <= seg["page_size"] and p["resident"] % 4096 == 0, "resident %s" % p)
                pages_resident += p["resident"]
                if p["state"] == "clean":
                    check(p["resident"] == 0, "a clean page is resident: %s" % p)
                if p["state"] != "in_use":
                    check(set(p) == {"state", "resident"}, "free page %s" % p)
                    continue
                check(p["capacity"] == 0 or p["resident"] > 0, "a page with carved blocks has none resident: %s" % p)
                check(0 <= p["used"] <= p["capacity"] <= p["reserved"] and p["block_size"] > 0 and
                      p["reserved"] * p["block_size"] <= seg["page_size"], "page %s" % p)
                used_bytes += p["used"] * p["block_size"]
                if p["block_size"] == out["block"]:
                    used_of_class += p["used"]
            check(pages_resident <= seg["resident"], "pages %d resident, segment %d" %
                  (pages_resident, seg["resident"]))
    check(used_of_class == out["used"], "%d blocks of %d B in use in the dump, the probe holds %d" %
          (used_of_class, out["block"], out["used"]))
    check(used_bytes == mi["uordblks"], "dump: %d bytes in use, uordblks %d" % (used_bytes, mi["uordblks"]))
    check(mapped + dump["cache"]["bytes"] == mi["arena"], "dump: segments %d + cache %d, arena %d" %
          (mapped, dump["cache"]["bytes"], mi["arena"]))
    check(dump["large"]["blocks"] == mi["hblks"] == 1 and dump["large"]["bytes"] == mi["hblkhd"],
          "dump large %s, hblks %d hblkhd %d" % (dump["large"], mi["hblks"], mi["hblkhd"]))
    check(dump["large"]["in_use_bytes"] >= out["large_bytes"], "large in_use_bytes %s" % dump["large"])
    print("  heap dump: %d heaps, %d bytes in use = uordblks, %d blocks of class %d" %
          (len(dump["heaps"]), used_bytes, used_of_class, out["block"]))


# ---- GALLEON_OPTIONS ----

WARNING = "galleon: warning: GALLEON_OPTIONS: "


def options_of(probe, env):
    r = run([probe, "options"], clean_env(env))
    return json.loads(r.stdout), r.stderr


def case_options(probe, reference):
    defaults, err = options_of(probe, {})
    check(err == "", "stderr without GALLEON_*: %r" % err)
    check(defaults["purge_delay_ms"] == 10 and defaults["stats_at_exit"] == 0, "defaults %s" % defaults)

    opts, err = options_of(probe, {"GALLEON_OPTIONS": "purge_delay_ms:100,stats_at_exit:json"})
    check(opts["purge_delay_ms"] == 100 and opts["stats_at_exit"] == 2, "options %s" % opts)
    check(WARNING not in err, "warnings for a good list: %r" % err)
    stats = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    check(len(stats) == 1 and {"galleon", "mapped", "in_use", "committed", "heaps"} <= set(stats[0]),
          "stats_at_exit:json printed %r" % err)
    check(dict(opts, purge_delay_ms=10, stats_at_exit=0) == defaults, "other options moved: %s" % opts)

    opts, err = options_of(probe, {"GALLEON_OPTIONS": "purge_delay_ms=7,retain_bytes:2m,purge_thread:off"})
    check(err == "" and (opts["purge_delay_ms"], opts["retain_bytes"], opts["purge_thread"]) == (7, 2 << 20, 0),
          "name=value, suffix, switch: %s %r" % (opts, err))

    opts, err = options_of(probe, {"GALLEON_OPTIONS": "purge_delay_ms:100,retain_bytes:3k",
                                   "GALLEON_PURGE_DELAY_MS": "5"})
    check(err == "" and opts["purge_delay_ms"] == 5 and opts["retain_bytes"] == 3072,
          "GALLEON_PURGE_DELAY_MS=5 must win over the list: %s %r" % (opts, err))

    opts, err = options_of(probe, {"GALLEON_OPTIONS": "bogus:1,purge_delay_ms:abc,novalue,segment_cache:8,"})
    lines = err.splitlines()
    check(len(lines) == 3 and all(l.startswith(WARNING) for l in lines), "warnings: %r" % err)
    for line, word in zip(lines, ("bogus", "purge_delay_ms:abc", "novalue")):
        check(word in line, "warning %r does not name %r" % (line, word))
    check(opts["segment_cache"] == 8 and opts["purge_delay_ms"] == 10, "after bad items: %s" % opts)
    print("  GALLEON_OPTIONS: items read, GALLEON_<NAME> wins, one warning per bad item:")
    for line in lines:
        print("    " + line)


CASES = {"malloc_info": case_malloc_info, "malloc_stats": case_malloc_stats, "heap_dump": case_heap_dump,
         "options": case_options}


def main(argv):
    if len(argv) != 4 or argv[3] not in CASES:
        sys.stderr.write("usage: stats_check.py PROBE GLIBC_REFERENCE %s\n" % "|".join(CASES))
        return 2
    try:
        CASES[argv[3]](argv[1], argv[2])
    except CheckFailed as e:
        print("FAILED: %s" % e)
        return 1
    print("%s: passed" % argv[3])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
