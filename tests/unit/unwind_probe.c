/* unwind_probe.c: a shared object for unwind_test.c, built twice with frames of
 * different sizes (PROBE_FRAME) but code of the same length, so that the two,
 * loaded one after the other at the same address, have their return addresses at
 * the same places with different call-frame rules: a walker that kept the first
 * one's rules after dlclose would misread the second's frames. */
#ifndef PROBE_FRAME
#define PROBE_FRAME 256
#endif

__attribute__((noinline)) int unwind_probe(void (*callback)(void)) {
  volatile char frame[PROBE_FRAME];
  frame[0] = 1;
  frame[PROBE_FRAME - 1] = 2;
  callback();
  return frame[0] + frame[PROBE_FRAME - 1];
}
