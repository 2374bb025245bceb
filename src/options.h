/* options.h: the option table (layer 2).  Read once at process start from
 * GALLEON_OPTIONS ("name:value,...") and the GALLEON_<NAME> environment variables,
 * which win (options.c); changed at run time by galleon_option_set() and mallopt().
 * Readers load them relaxed. */
#ifndef GALLEON_OPTIONS_H
#define GALLEON_OPTIONS_H

#include "types.h"

typedef struct gl_options_s {
  long purge_delay_ms;  /* a freed page or segment stays resident at least this long */
  long purge_idle_ms;   /* no allocation activity this long: all free memory is returned */
  long purge_window_ms; /* how far back recent demand reaches (0: keep nothing for reuse) */
  long purge_decommit;  /* 1: MADV_DONTNEED, 0: MADV_FREE */
  long retain_bytes;    /* free bytes a heap keeps whatever its demand (cache: 2x) */
  long segment_cache;   /* freed segments kept for reuse */
  long stats_at_exit;   /* 1: text, 2: JSON on stderr at exit */
  long verbose;
  long purge_thread;    /* 1: a background thread purges while the program is idle */
  long huge_pages;      /* 1: segments ask for transparent huge pages; purging keeps them whole */
  long pressure_percent; /* cgroup usage at this % of its limit: return all free memory (0: off) */
  long profile_interval; /* heap profiler: mean bytes allocated between two samples */
  long profile_leaks;    /* heap profiler: 1: report the sampled blocks still live at exit */
  long profile_dump_mb;  /* heap profiler: also dump each time live memory grows this much (0: off) */
} gl_options_t;

extern GL_HIDDEN gl_options_t gl_options;

GL_HIDDEN void options_init(void);

#endif
