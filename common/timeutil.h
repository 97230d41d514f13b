/* Time helpers: the monotonic clocks every module reads, and milliseconds
 * as the struct timeval libevent's timers take. Pure, header only. */
#ifndef EDGEPROXY_TIMEUTIL_H
#define EDGEPROXY_TIMEUTIL_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

/* ms milliseconds as a struct timeval (evtimer_add, event_add). */
static inline struct timeval tv_from_ms(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* The clock in units of 1 / per_sec seconds (truncated). */
static inline uint64_t time_read(clockid_t clock, uint64_t per_sec)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * per_sec + (uint64_t)ts.tv_nsec / (1000000000 / per_sec);
}

/* Monotonic milliseconds, coarse clock (vDSO, no syscall; it advances by
 * the kernel tick, a few ms): timeouts and deadlines. */
static inline uint64_t time_now_ms(void)
{
    return time_read(CLOCK_MONOTONIC_COARSE, 1000);
}

/* Monotonic microseconds, precise clock: request durations. */
static inline uint64_t time_now_us(void)
{
    return time_read(CLOCK_MONOTONIC, 1000000);
}

#endif
