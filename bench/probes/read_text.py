"""read_text.py - Python reads a 37 MB text file whole and runs a regular
expression over it.  A third of the way in the file has a character beyond Latin-1,
two thirds in one beyond U+FFFF: the decoder widens its string twice as it goes,
through buffers of about 38, 76 and 151 MB, each freed as the next fills.  Prints
one RESULT line (peak RSS of the process from getrusage)."""
import os, re, resource, sys, tempfile, time

path = os.path.join(tempfile.gettempdir(), "galleon-probe-text-%d.txt" % os.getpid())
line = "static int function_%d(struct thing *t) { return t->field + %d; }\n"
marks = {12_000_000: "/* \u0100 */\n", 25_000_000: "/* \U0001F600 */\n"}
with open(path, "w", encoding="utf-8") as f:
    i = 0
    while f.tell() < 37_000_000:
        for at, text in list(marks.items()):
            if f.tell() >= at:
                f.write(text)
                del marks[at]
        f.write(line % (i, i))
        i += 1
t0 = time.monotonic()
s = open(path, encoding="utf-8", errors="ignore").read()
found = len(re.findall(r"[a-z_]+[0-9]*\(", s))
elapsed = time.monotonic() - t0
os.unlink(path)
ru = resource.getrusage(resource.RUSAGE_SELF)
print("RESULT read-text elapsed_s=%.4f minflt=%d maxrss_kb=%d found=%d" % (elapsed, ru.ru_minflt, ru.ru_maxrss, found))
