/* double_free_cancel_pending: a double free in a thread whose cancellation is
 * pending.  The report must still be printed and the process aborted: Galleon
 * writes with the raw system call, not write(), which is a cancellation point and
 * would end the thread silently (the process would then exit 0).
 * Expected: double free of P. */
#include "misuse.h"

static char *victim;
static pthread_barrier_t cancel_sent;

static void *doomed(void *arg) {
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
  pthread_barrier_wait(&cancel_sent); /* main has called pthread_cancel */
  int old;
  pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old); /* deferred: now pending */
  free(opaque(victim));
  misuse_returned("free with a cancel pending", NULL);
}

int main(void) {
  char *keep = malloc(48);
  victim = malloc(48);
  SETUP(keep && victim);
  free(victim);
  expect_double_free(victim);
  SETUP(pthread_barrier_init(&cancel_sent, NULL, 2) == 0);
  pthread_t t;
  SETUP(pthread_create(&t, NULL, doomed, NULL) == 0);
  SETUP(pthread_cancel(t) == 0);
  pthread_barrier_wait(&cancel_sent);
  void *result;
  pthread_join(t, &result);
  /* Reached only when the thread was cancelled inside the report. */
  misuse_returned("pthread_join of the thread cancelled in free", result);
}
