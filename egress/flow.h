/* Internal to egress/: the per-worker egress state, and a flow: one
 * connection (TLS, other TCP) or one request (port 80) on its way through
 * the decision, and while open, on its source address's list so that a new
 * policy can close it. */
#ifndef EDGEPROXY_EGRESS_FLOW_H
#define EDGEPROXY_EGRESS_FLOW_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cache.h"
#include "egress_policy.h"
#include "list.h"
#include "resolve.h"
#include "strmap.h"

struct worker;
struct event;
struct egress_rec;
struct exchange;

/* Open flows are re-decided this often (a policy changed within its TTL),
 * and at once after a purge of their source. */
#define EGRESS_RECHECK_MS 1000

enum egress_kind {
    EGRESS_KIND_HTTP = 0, /* a request on port 80 */
    EGRESS_KIND_TLS,      /* a connection to port 443, decided by its SNI */
    EGRESS_KIND_TCP,      /* any other TCP, decided by address */
    EGRESS_KIND_COUNT,
};

/* A worker's egress state (w->egress). */
struct egress {
    struct worker *w;
    struct cache *policies;   /* source address -> struct egress_rec */
    struct resolver *dns;     /* NULL: no usable nameserver (name rules then fail) */
    struct strmap sources;    /* address -> struct egress_source: open flows */
    struct list_node conns;   /* egress_conn.link: TLS/TCP connections (drain) */
    struct event *recheck_ev; /* every EGRESS_RECHECK_MS */
    struct event *purge_ev;   /* after a purge: the dirty sources */
    bool purge_all;           /* ... or all of them */
};

/* A source address with open flows. */
struct egress_source {
    struct strmap_node node;
    struct egress *eg;
    struct list_node flows; /* egress_flow.link */
    struct cache_waiter cw; /* a re-read of its policy in flight */
    bool dirty;             /* purged since the last look */
    int busy;               /* being re-decided: not freed under the walk */
    char addr[];
};

struct egress_flow;

/* What the flow's owner (conn.c, http.c) implements. */
struct egress_flow_ops {
    /* The verdict is in: f->allowed, f->d (the rule), f->dial (where to
     * connect when allowed). */
    void (*decided)(struct egress_flow *f);
    /* A new policy refuses the open flow (f->revoked says by which rule):
     * close it. */
    void (*revoke)(struct egress_flow *f);
    /* Callback nesting: every entry point brackets its work with these, so
     * that an owner closed inside is freed as the stack unwinds. */
    void (*hold)(struct egress_flow *f);
    void (*release)(struct egress_flow *f);
};

struct egress_flow {
    const struct egress_flow_ops *ops;
    struct egress *eg;
    enum egress_kind kind;
    struct sockaddr_storage dst; /* the original destination */
    socklen_t dst_len;
    char src[INET6_ADDRSTRLEN];          /* the source address, the policy's id */
    char dst_text[INET6_ADDRSTRLEN + 8]; /* "203.0.113.1:443", "[2001:db8::1]:443" */
    char name[EGRESS_NAME_MAX + 1];      /* Host or SNI, normalised; "" = none */
    bool ech;                            /* the ClientHello offered ECH (name: its outer SNI) */

    /* the decision */
    bool want;         /* the owner asked for it (egress_flow_decide) */
    bool policy_known; /* the cache answered */
    bool resolving;
    bool decided;
    bool allowed;
    int status;             /* the cache's answer (CACHE_*) */
    struct egress_rec *rec; /* the policy (CACHE_FOUND), a reference */
    uint64_t checked;       /* rec serial of the last decision */
    bool limit_held;        /* a slot of rec->limit (maxConnections) */
    struct egress_decision d;
    struct sockaddr_storage dial; /* allowed: where to connect */
    socklen_t dial_len;
    char dial_text[INET6_ADDRSTRLEN + 8];
    char revoked[EGRESS_RULE_STRLEN]; /* "": not revoked */
    struct cache_waiter cw;
    struct resolve_waiter rw;

    /* open: on its source's list */
    struct egress_source *source;
    struct list_node link;
    uint64_t start_us;
};

/* A new flow for a connection from `peer` to `dst` (copied). */
void egress_flow_init(struct egress_flow *f, struct egress *eg, enum egress_kind kind,
                      const struct egress_flow_ops *ops, const struct sockaddr *peer,
                      const struct sockaddr *dst, socklen_t dst_len);

/* Starts looking the source's policy up (a connection may still be
 * peeking meanwhile). A source with no usable policy (none, broken,
 * Redis unavailable) or at its maxConnections is decided at once, refused,
 * without waiting for egress_flow_decide. May call ops->decided before it
 * returns. */
void egress_flow_lookup(struct egress_flow *f);

/* The name is known (NULL: none; normalised): decide as soon as the policy
 * is, resolving the name first when a name rule is what allows it. May
 * call ops->decided before it returns. Starts the lookup if not started. */
void egress_flow_decide(struct egress_flow *f, const char *name);

/* The flow is over: stops waiting, leaves its source's list, gives back
 * its maxConnections slot and its policy. Safe twice. */
void egress_flow_end(struct egress_flow *f);

/* The sandbox id for logs and pools: the policy's sandboxId, NULL when
 * there is none. */
const char *egress_flow_sandbox(const struct egress_flow *f);

/* Re-deciding open flows (flow.c): started by egress.c. */
void egress_recheck_cb(int fd, short what, void *arg);
void egress_purge_cb(int fd, short what, void *arg);
void egress_purge_hook(void *arg, const char *id);

/* The log line of a flow that ended (log.c): a TLS/TCP connection with the
 * bytes each way, or a port-80 request (ex). */
void egress_log_conn(struct egress_flow *f, uint64_t bytes_out, uint64_t bytes_in,
                     uint64_t duration_us);
void egress_log_request(struct egress_flow *f, const struct exchange *ex, uint64_t duration_us);

/* Counts a decision in /metrics. */
void egress_count_decision(struct egress *eg, const struct egress_flow *f);

/* "203.0.113.1:443" or "[2001:db8::1]:443" (an IPv4-mapped address as
 * IPv4) into buf (INET6_ADDRSTRLEN + 8). */
void egress_format_endpoint(const struct sockaddr *sa, char *buf, size_t cap);

#endif
