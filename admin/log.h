/* Error log: one line per event on stderr, with a level. */
#ifndef EDGEPROXY_LOG_H
#define EDGEPROXY_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Set by the main thread alone (start, SIGHUP), read by every thread:
 * relaxed atomics, a log line may use the level of just before a reload. */
extern int log_level_current;

static inline void log_set_level(int level)
{
    __atomic_store_n(&log_level_current, level, __ATOMIC_RELAXED);
}

static inline int log_level_get(void)
{
    return __atomic_load_n(&log_level_current, __ATOMIC_RELAXED);
}

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                       \
    do {                                     \
        if (log_level_get() >= LOG_DEBUG)    \
            log_msg(LOG_DEBUG, __VA_ARGS__); \
    } while (0)

#endif
