// kpbench: the load generator and the upstream server of the keepalive-proxy
// benchmark, in one binary so that neither is the bottleneck on a 2-core
// machine (a Node load generator would mostly measure itself).
//
//   kpbench server --port P                        echo / sink / source server
//   kpbench rr    --port P --conns N --size 64 --duration S [--warmup S]
//   kpbench cps   --port P --parallel N --duration S
//   kpbench bulk  --port P --dir up|down --duration S [--streams N]
//   kpbench idle  --port P --conns N --parallel N
//   (cps, bulk, idle) ... --tls-ca CA.pem          the same over TLS 1.3
//
// cps, bulk and idle take --tls-ca FILE: the client then speaks TLS 1.3 to
// the port (a proxy terminating TLS in front of the plaintext server), with
// no session resumption (every connection is a full handshake) and the
// server's certificate verified against that CA and the --host address, so a
// target serving the wrong certificate fails. cps then ends each connection
// cleanly: close_notify and FIN, then the peer's close_notify awaited.
//
// Every client mode checks every byte it gets back and prints one JSON object
// (idle prints one per phase and waits for a line on stdin between them, so
// the caller can read the proxy's RSS while all connections are held open).
//
// The server picks a connection's mode from its first byte: a non-zero first
// byte means echo (everything is echoed, that byte included); a zero byte
// starts a 16-byte header, "\0SNK" (sink: verify the pattern, answer the byte
// count and the mismatch count when the client half-closes) or "\0SRC" + a
// little-endian u32 of milliseconds (source: send the pattern for that long,
// then half-close). Single-threaded, epoll, level-triggered, non-blocking.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define MAXIO (256 * 1024)
// A prime, so that I/O chunk boundaries never line up with the pattern and a
// shifted or repeated chunk is caught.
#define PAT_LEN 65521
#define HDR_LEN 16
#define RR_MAX 4096

static uint8_t *pat; // PAT_LEN + MAXIO bytes: pat + (off % PAT_LEN) is valid for MAXIO bytes
static const char *host = "127.0.0.1";
static int port = 0;

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "kpbench: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(2);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void make_pattern(void) {
  pat = malloc(PAT_LEN + MAXIO);
  if (!pat) die("out of memory");
  uint32_t x = 2463534242u;
  for (int i = 0; i < PAT_LEN; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    pat[i] = (uint8_t)x;
  }
  for (int i = PAT_LEN; i < PAT_LEN + MAXIO; i++) pat[i] = pat[i - PAT_LEN];
}

/** Bytes of buf that differ from the pattern at stream offset off (0 when all match). */
static uint64_t pattern_mismatch(const uint8_t *buf, size_t n, uint64_t off) {
  if (memcmp(buf, pat + off % PAT_LEN, n) == 0) return 0;
  uint64_t bad = 0;
  const uint8_t *p = pat + off % PAT_LEN;
  for (size_t i = 0; i < n; i++) bad += buf[i] != p[i];
  return bad;
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static struct sockaddr_in target_addr(void) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) die("bad host %s", host);
  return a;
}

/** A blocking connected socket, or -1 with errno set. */
static int connect_blocking(void) {
  struct sockaddr_in a = target_addr();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  struct timeval tv = {.tv_sec = 30};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

/** A non-blocking socket with a connect in progress (or done), or -1 with errno set. */
static int connect_nonblocking(void) {
  struct sockaddr_in a = target_addr();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  set_nodelay(fd);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static int write_all(int fd, const void *buf, size_t n) {
  const uint8_t *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_all(int fd, void *buf, size_t n) {
  uint8_t *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r == 0) {
      errno = EPIPE;
      return -1;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void print_rusage(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("\"cpuUserS\":%.3f,\"cpuSysS\":%.3f", ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
         ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
}

// ---------------------------------------------------------------- failures

// Failures by kind, printed as a JSON object; the caller sums them.
#define NFAIL 9
static const char *fail_names[NFAIL] = {"connect", "reset", "eof", "mismatch", "timeout", "write", "addrnotavail", "other", "tls"};
static uint64_t fails[NFAIL];
static char tls_first_error[200]; // the reason of the first TLS failure, printed as tlsError
enum { F_CONNECT, F_RESET, F_EOF, F_MISMATCH, F_TIMEOUT, F_WRITE, F_ADDRNOTAVAIL, F_OTHER, F_TLS };

static int fail_for_errno(int e) {
  if (e == ECONNRESET || e == EPIPE) return F_RESET;
  if (e == ECONNREFUSED || e == ETIMEDOUT || e == EHOSTUNREACH) return F_CONNECT;
  if (e == EADDRNOTAVAIL) return F_ADDRNOTAVAIL;
  return F_OTHER;
}

static uint64_t print_fails(void) {
  uint64_t total = 0;
  printf("\"failures\":{");
  int first = 1;
  for (int i = 0; i < NFAIL; i++) {
    total += fails[i];
    if (!fails[i]) continue;
    printf("%s\"%s\":%llu", first ? "" : ",", fail_names[i], (unsigned long long)fails[i]);
    first = 0;
  }
  printf("},\"failed\":%llu", (unsigned long long)total);
  if (tls_first_error[0]) printf(",\"tlsError\":\"%s\"", tls_first_error);
  return total;
}

// ---------------------------------------------------------------- tls client

static SSL_CTX *tls_ctx; // NULL: the client speaks plaintext

/** A TLS 1.3-only client context without resumption that verifies the server against ca_file and --host. */
static void tls_init(const char *ca_file) {
  tls_ctx = SSL_CTX_new(TLS_client_method());
  if (!tls_ctx) die("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(tls_ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(tls_ctx, TLS1_3_VERSION);
  // No session cache and no ticket kept: every connection is a full
  // handshake, the cost the TLS scenarios are there to measure.
  SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(tls_ctx, SSL_OP_NO_TICKET);
  if (SSL_CTX_load_verify_locations(tls_ctx, ca_file, NULL) != 1) die("cannot load the CA %s", ca_file);
  SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
  // The name checked is the address connected to (no SNI for an IP address).
  if (X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(tls_ctx), host) != 1) die("--host %s is not an IP address", host);
}

/** A client SSL on connected fd, or NULL (counted as a TLS failure). */
static SSL *tls_new(int fd) {
  SSL *ssl = SSL_new(tls_ctx);
  if (ssl && SSL_set_fd(ssl, fd) == 1) return ssl;
  SSL_free(ssl);
  return NULL;
}

/** Frees ssl (NULL is fine) and closes fd; no close_notify: for failures and for the end of a run. */
static void tls_drop(SSL *ssl, int fd) {
  SSL_free(ssl);
  if (fd >= 0) close(fd);
}

/**
 * The failure kind of an SSL call that returned r (not a WANT_*). A peer's EOF
 * without close_notify is an "eof" as for plaintext; a failed handshake (a
 * certificate that does not verify) is "tls", its reason kept for tlsError.
 * Empties OpenSSL's error queue, which must be empty before the next call.
 */
static int tls_fail_kind(SSL *ssl, int r) {
  int saved = errno;
  int e = SSL_get_error(ssl, r);
  unsigned long err = ERR_peek_error();
  int kind = F_TLS;
  if (e == SSL_ERROR_ZERO_RETURN) kind = F_EOF;
  else if (e == SSL_ERROR_SYSCALL) kind = saved ? fail_for_errno(saved) : F_EOF;
  else if (ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING) kind = F_EOF;
  if (kind == F_TLS && !tls_first_error[0]) {
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) snprintf(tls_first_error, sizeof tls_first_error, "certificate: %s", X509_verify_cert_error_string(v));
    else if (err) ERR_error_string_n(err, tls_first_error, sizeof tls_first_error);
    else snprintf(tls_first_error, sizeof tls_first_error, "SSL_get_error %d", e);
  }
  ERR_clear_error();
  return kind;
}

/** Like read_all and write_all, on a blocking TLS connection; -1 with *kind set on failure. */
static int tls_read_all(SSL *ssl, void *buf, size_t n, int *kind) {
  uint8_t *p = buf;
  while (n > 0) {
    int r = SSL_read(ssl, p, (int)n);
    if (r <= 0) {
      *kind = tls_fail_kind(ssl, r);
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int tls_write_all(SSL *ssl, const void *buf, size_t n, int *kind) {
  // Blocking and without SSL_MODE_ENABLE_PARTIAL_WRITE: all of it or an error.
  int r = SSL_write(ssl, buf, (int)n);
  if (r <= 0) {
    *kind = tls_fail_kind(ssl, r);
    return -1;
  }
  return 0;
}

// ---------------------------------------------------------------- latencies

typedef struct {
  uint32_t *v;
  size_t n, cap;
} lat_t;

static void lat_push(lat_t *l, uint64_t ns) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 1 << 16;
    l->v = realloc(l->v, l->cap * sizeof *l->v);
    if (!l->v) die("out of memory");
  }
  l->v[l->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/** Nearest-rank percentile in microseconds. */
static double pct_us(const lat_t *l, double p) {
  if (l->n == 0) return -1;
  size_t i = (size_t)(p / 100.0 * (double)l->n);
  if (i >= l->n) i = l->n - 1;
  return l->v[i] / 1000.0;
}

static void print_lat(lat_t *l) {
  qsort(l->v, l->n, sizeof *l->v, cmp_u32);
  printf("\"p50Us\":%.2f,\"p90Us\":%.2f,\"p99Us\":%.2f,\"p999Us\":%.2f,\"maxUs\":%.2f", pct_us(l, 50), pct_us(l, 90),
         pct_us(l, 99), pct_us(l, 99.9), l->n ? l->v[l->n - 1] / 1000.0 : -1);
}

// ---------------------------------------------------------------- server

typedef struct {
  uint8_t mode; // 0 undecided, 'E' echo, 'S' sink, 'R' source, 'D' draining (source done)
  uint8_t hdrlen;
  uint8_t hdr[HDR_LEN];
  uint64_t off, bad, deadline;
  uint8_t *pend;
  size_t pendlen, pendoff;
  int close_after_flush;
} sconn_t;

static sconn_t *sconns;
static int sconn_cap;
static int ep;
static uint8_t *iobuf;

static void ep_mod(int fd, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.fd = fd};
  epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

static void s_close(int fd) {
  sconn_t *c = &sconns[fd];
  free(c->pend);
  memset(c, 0, sizeof *c);
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
}

/** Echoes n bytes; keeps what the socket would not take and stops reading until it drains. */
static void s_echo(int fd, const uint8_t *buf, size_t n) {
  sconn_t *c = &sconns[fd];
  ssize_t w = write(fd, buf, n);
  if (w < 0) {
    if (errno != EAGAIN) {
      s_close(fd);
      return;
    }
    w = 0;
  }
  if ((size_t)w < n) {
    c->pend = malloc(n - (size_t)w);
    if (!c->pend) die("out of memory");
    memcpy(c->pend, buf + w, n - (size_t)w);
    c->pendlen = n - (size_t)w;
    c->pendoff = 0;
    ep_mod(fd, EPOLLOUT);
  }
}

static void s_sink(int fd, const uint8_t *buf, size_t n) {
  sconn_t *c = &sconns[fd];
  c->bad += pattern_mismatch(buf, n, c->off);
  c->off += n;
}

static void s_header(int fd) {
  sconn_t *c = &sconns[fd];
  if (memcmp(c->hdr, "\0SNK", 4) == 0) {
    c->mode = 'S';
  } else if (memcmp(c->hdr, "\0SRC", 4) == 0) {
    uint32_t ms = (uint32_t)c->hdr[4] | (uint32_t)c->hdr[5] << 8 | (uint32_t)c->hdr[6] << 16 | (uint32_t)c->hdr[7] << 24;
    c->mode = 'R';
    c->deadline = now_ns() + (uint64_t)ms * 1000000ull;
    ep_mod(fd, EPOLLOUT);
  } else {
    s_close(fd);
  }
}

static void s_readable(int fd) {
  sconn_t *c = &sconns[fd];
  ssize_t r = read(fd, iobuf, MAXIO);
  if (r < 0) {
    if (errno != EAGAIN && errno != EINTR) s_close(fd);
    return;
  }
  if (r == 0) {
    if (c->mode == 'S') {
      uint8_t t[HDR_LEN];
      put_u64(t, c->off);
      put_u64(t + 8, c->bad);
      (void)!write(fd, t, sizeof t); // 16 bytes into an empty send buffer
    }
    s_close(fd);
    return;
  }
  size_t n = (size_t)r;
  const uint8_t *p = iobuf;
  if (c->mode == 0) {
    if (c->hdrlen == 0 && p[0] != 0) {
      c->mode = 'E';
    } else {
      size_t room = (size_t)HDR_LEN - c->hdrlen;
      size_t take = room < n ? room : n;
      memcpy(c->hdr + c->hdrlen, p, take);
      c->hdrlen += (uint8_t)take;
      p += take;
      n -= take;
      if (c->hdrlen < HDR_LEN) return;
      s_header(fd);
      if (sconns[fd].mode == 0) return; // closed: bad header
    }
  }
  if (n == 0) return;
  if (c->mode == 'E') s_echo(fd, p, n);
  else if (c->mode == 'S') s_sink(fd, p, n);
  // 'R' and 'D': whatever the client sends is discarded.
}

static void s_writable(int fd) {
  sconn_t *c = &sconns[fd];
  if (c->mode == 'E') {
    ssize_t w = write(fd, c->pend + c->pendoff, c->pendlen - c->pendoff);
    if (w < 0) {
      if (errno != EAGAIN) s_close(fd);
      return;
    }
    c->pendoff += (size_t)w;
    if (c->pendoff == c->pendlen) {
      free(c->pend);
      c->pend = NULL;
      c->pendlen = c->pendoff = 0;
      ep_mod(fd, EPOLLIN);
    }
  } else if (c->mode == 'R') {
    if (now_ns() >= c->deadline) {
      shutdown(fd, SHUT_WR);
      c->mode = 'D';
      ep_mod(fd, EPOLLIN);
      return;
    }
    ssize_t w = write(fd, pat + c->off % PAT_LEN, MAXIO);
    if (w < 0) {
      if (errno != EAGAIN) s_close(fd);
      return;
    }
    c->off += (uint64_t)w;
  }
}

static _Noreturn void run_server(void) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  sconn_cap = (int)(rl.rlim_cur > 4000000 ? 4000000 : rl.rlim_cur);
  sconns = calloc((size_t)sconn_cap, sizeof *sconns);
  iobuf = malloc(MAXIO);
  if (!sconns || !iobuf) die("out of memory");
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = target_addr();
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0) die("bind %s:%d: %s", host, port, strerror(errno));
  if (listen(lfd, 4096) < 0) die("listen: %s", strerror(errno));
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event evs[512];
  for (;;) {
    int n = epoll_wait(ep, evs, 512, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) break;
          if (cfd >= sconn_cap) {
            close(cfd);
            continue;
          }
          set_nodelay(cfd);
          memset(&sconns[cfd], 0, sizeof sconns[cfd]);
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
        }
        continue;
      }
      uint32_t e = evs[i].events;
      if (e & EPOLLOUT) s_writable(fd);
      else if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) s_readable(fd);
    }
  }
}

// ---------------------------------------------------------------- rr

typedef struct {
  int fd;
  uint32_t id;
  uint64_t seq, t0;
  size_t got;
  uint8_t sent[RR_MAX];
  uint8_t recv[RR_MAX];
} rconn_t;

/** Message seq of connection id: a non-zero first byte (the server's echo mode), then bytes derived from both. */
static void rr_fill(rconn_t *c, size_t size) {
  uint64_t x = ((uint64_t)c->id << 40) ^ c->seq ^ 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < size; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    c->sent[i] = (uint8_t)(x >> 56);
  }
  c->sent[0] = (uint8_t)('A' + c->seq % 26);
}

static int run_rr(int conns, size_t size, double duration, double warmup) {
  if (size < 1 || size > RR_MAX) die("--size must be 1..%d", RR_MAX);
  rconn_t *cs = calloc((size_t)conns, sizeof *cs);
  if (!cs) die("out of memory");
  ep = epoll_create1(EPOLL_CLOEXEC);
  for (int i = 0; i < conns; i++) {
    int fd = connect_blocking();
    if (fd < 0) die("connect %s:%d: %s", host, port, strerror(errno));
    set_nodelay(fd);
    set_nonblock(fd);
    cs[i].fd = fd;
    cs[i].id = (uint32_t)i;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  lat_t lat = {0};
  uint64_t start = now_ns();
  uint64_t rec_start = start + (uint64_t)(warmup * 1e9);
  uint64_t end = rec_start + (uint64_t)(duration * 1e9);
  uint64_t done = 0, all = 0, last_progress = start;
  for (int i = 0; i < conns; i++) {
    rr_fill(&cs[i], size);
    cs[i].t0 = now_ns();
    if (write_all(cs[i].fd, cs[i].sent, size) < 0) fails[fail_for_errno(errno)]++;
  }
  struct epoll_event evs[256];
  // live: connections with a request in flight. After `end` no new request is
  // sent and the answers in flight are awaited, so that every connection ends
  // with a clean FIN (no unread bytes, hence no reset) and every byte sent was
  // checked.
  int live = conns, stopping = 0;
  uint64_t t = start, t_stop = 0;
  while (live > 0) {
    if (!stopping && t >= end) {
      stopping = 1;
      t_stop = end;
    }
    if (stopping && t - end > 2000000000ull) {
      fails[F_TIMEOUT] += (uint64_t)live;
      break;
    }
    int n = epoll_wait(ep, evs, 256, 200);
    t = now_ns();
    if (n <= 0) {
      if (t - last_progress > 5000000000ull) {
        fails[F_TIMEOUT] += (uint64_t)live;
        break;
      }
      continue;
    }
    for (int k = 0; k < n; k++) {
      rconn_t *c = evs[k].data.ptr;
      ssize_t r = read(c->fd, c->recv + c->got, size - c->got);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        fails[r == 0 ? F_EOF : fail_for_errno(errno)]++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        live--;
        continue;
      }
      c->got += (size_t)r;
      if (c->got < size) continue;
      uint64_t t1 = now_ns();
      if (memcmp(c->recv, c->sent, size) != 0) {
        fails[F_MISMATCH]++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        live--;
        continue;
      }
      if (c->t0 >= rec_start && t1 <= end) {
        lat_push(&lat, t1 - c->t0);
        done++;
      }
      all++;
      last_progress = t1;
      c->got = 0;
      if (stopping || t1 >= end) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        live--;
        continue;
      }
      c->seq++;
      rr_fill(c, size);
      c->t0 = now_ns();
      if (write_all(c->fd, c->sent, size) < 0) {
        fails[fail_for_errno(errno)]++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        live--;
      }
    }
  }
  if (!stopping) t_stop = t < end ? t : end;
  double secs = (double)(t_stop > rec_start ? t_stop - rec_start : 0) / 1e9;
  printf("{\"mode\":\"rr\",\"conns\":%d,\"size\":%zu,\"seconds\":%.3f,\"transactions\":%llu,\"allTransactions\":%llu,"
         "\"tps\":%.1f,",
         conns, size, secs, (unsigned long long)done, (unsigned long long)all, secs > 0 ? (double)done / secs : 0);
  print_lat(&lat);
  printf(",");
  print_fails();
  printf(",");
  print_rusage();
  printf("}\n");
  for (int i = 0; i < conns; i++) close(cs[i].fd);
  return 0;
}

// ---------------------------------------------------------------- cps and idle

enum { S_FREE, S_CONNECTING, S_HANDSHAKE, S_SENT, S_OPEN, S_CLOSING };

typedef struct {
  int fd;
  int state;
  uint32_t watching; // the epoll events fd is registered for; 0: not in the epoll set
  uint64_t t0;
  size_t got;
  uint8_t msg[64], recv[64];
  size_t size;
  SSL *ssl;    // TLS only: made once TCP is connected
  int written; // TLS only: the message went out (a wanting SSL_write is retried with the same arguments)
  int shut;    // TLS only: our close_notify and FIN went out
} slot_t;

static void slot_watch(slot_t *s, uint32_t events) {
  if (s->watching == events) return;
  struct epoll_event ev = {.events = events, .data.ptr = s};
  epoll_ctl(ep, s->watching ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd, &ev);
  s->watching = events;
}

static void slot_unwatch(slot_t *s) {
  if (s->watching) epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
  s->watching = 0;
}

/** Closes slot s (without close_notify) and frees it. */
static void slot_release(slot_t *s) {
  if (s->fd >= 0) slot_unwatch(s);
  tls_drop(s->ssl, s->fd);
  s->ssl = NULL;
  s->fd = -1;
  s->state = S_FREE;
}

static void slot_fail(slot_t *s, int kind) {
  fails[kind]++;
  slot_release(s);
}

/** Starts a connect on slot s; on an immediate failure the slot stays free and the failure is counted. */
static void slot_start(slot_t *s, uint64_t serial, size_t size) {
  s->fd = connect_nonblocking();
  s->t0 = now_ns();
  s->got = 0;
  s->size = size;
  s->watching = 0;
  s->ssl = NULL;
  s->written = s->shut = 0;
  uint64_t x = serial * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->msg[i] = (uint8_t)x;
  }
  s->msg[0] = (uint8_t)('a' + serial % 26);
  if (s->fd < 0) {
    fails[fail_for_errno(errno)]++;
    s->state = S_FREE;
    return;
  }
  s->state = S_CONNECTING;
  slot_watch(s, EPOLLOUT);
}

/** After an SSL call on slot s returned r: 0 while it waits for what OpenSSL wants, -1 when the slot failed (counted, freed). */
static int slot_tls_retry(slot_t *s, int r) {
  int e = SSL_get_error(s->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    slot_watch(s, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
    return 0;
  }
  slot_fail(s, tls_fail_kind(s->ssl, r));
  return -1;
}

static int slot_check_echo(slot_t *s) {
  if (memcmp(s->recv, s->msg, s->size) == 0) return 1;
  slot_fail(s, F_MISMATCH);
  return -1;
}

/** TLS: sends the message once and reads its echo; 1 when it came back and matched. */
static int slot_tls_exchange(slot_t *s) {
  if (!s->written) {
    int r = SSL_write(s->ssl, s->msg, (int)s->size);
    if (r <= 0) return slot_tls_retry(s, r);
    s->written = 1;
  }
  // SSL_read until it wants more: a record may hold more than one epoll event's worth.
  while (s->got < s->size) {
    int r = SSL_read(s->ssl, s->recv + s->got, (int)(s->size - s->got));
    if (r <= 0) return slot_tls_retry(s, r);
    s->got += (size_t)r;
  }
  return slot_check_echo(s);
}

/** TLS: our close_notify and FIN, then the peer's close_notify; 2 once it came. */
static int slot_tls_closing(slot_t *s) {
  s->state = S_CLOSING;
  if (!s->shut) {
    int r = SSL_shutdown(s->ssl);
    if (r < 0) return slot_tls_retry(s, r);
    s->shut = 1;
    shutdown(s->fd, SHUT_WR);
    if (r == 1) return 2;
  }
  uint8_t extra[64];
  int r = SSL_read(s->ssl, extra, sizeof extra);
  if (r > 0) {
    slot_fail(s, F_MISMATCH); // nothing may follow the echo
    return -1;
  }
  if (SSL_get_error(s->ssl, r) == SSL_ERROR_ZERO_RETURN) return 2;
  return slot_tls_retry(s, r);
}

/**
 * Advances slot s on an event: 1 when its exchange completed and verified,
 * 2 when (TLS) its clean close completed, 0 while it waits, -1 when it failed.
 */
static int slot_event(slot_t *s) {
  if (s->state == S_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      slot_fail(s, err == ECONNRESET ? F_RESET : err == EADDRNOTAVAIL ? F_ADDRNOTAVAIL : F_CONNECT);
      return -1;
    }
    if (tls_ctx) {
      s->ssl = tls_new(s->fd);
      if (!s->ssl) {
        slot_fail(s, F_TLS);
        return -1;
      }
      s->state = S_HANDSHAKE;
    } else {
      if (write(s->fd, s->msg, s->size) != (ssize_t)s->size) {
        slot_fail(s, F_WRITE);
        return -1;
      }
      s->state = S_SENT;
      slot_watch(s, EPOLLIN);
      return 0;
    }
  }
  if (s->state == S_HANDSHAKE) {
    int r = SSL_connect(s->ssl);
    if (r != 1) return slot_tls_retry(s, r);
    s->state = S_SENT;
  }
  if (s->state == S_CLOSING) return slot_tls_closing(s);
  if (s->state != S_SENT) return 0;
  if (s->ssl) return slot_tls_exchange(s);
  ssize_t r = read(s->fd, s->recv + s->got, s->size - s->got);
  if (r < 0 && errno == EAGAIN) return 0;
  if (r <= 0) {
    slot_fail(s, r == 0 ? F_EOF : fail_for_errno(errno));
    return -1;
  }
  s->got += (size_t)r;
  if (s->got < s->size) return 0;
  return slot_check_echo(s);
}

static int run_cps(int parallel, double duration) {
  slot_t *slots = calloc((size_t)parallel, sizeof *slots);
  if (!slots) die("out of memory");
  ep = epoll_create1(EPOLL_CLOEXEC);
  lat_t lat = {0};
  uint64_t start = now_ns(), end = start + (uint64_t)(duration * 1e9), serial = 0, ok = 0;
  const uint64_t timeout = 5000000000ull;
  for (int i = 0; i < parallel; i++) {
    slots[i].fd = -1;
    slot_start(&slots[i], serial++, 64);
  }
  struct epoll_event evs[256];
  uint64_t t = start, last_sweep = start;
  for (;;) {
    int active = 0;
    for (int i = 0; i < parallel; i++) active += slots[i].state != S_FREE;
    if (t >= end && active == 0) break;
    int n = epoll_wait(ep, evs, 256, 100);
    t = now_ns();
    for (int k = 0; k < n; k++) {
      slot_t *s = evs[k].data.ptr;
      int r = slot_event(s);
      // TLS: a connection counts once it has also closed cleanly.
      if (r == 1 && s->ssl) r = slot_tls_closing(s);
      if (r == 1 || r == 2) {
        lat_push(&lat, now_ns() - s->t0);
        ok++;
        slot_release(s);
      }
    }
    if (t - last_sweep > 50000000ull) {
      last_sweep = t;
      for (int i = 0; i < parallel; i++)
        if (slots[i].state != S_FREE && t - slots[i].t0 > timeout) slot_fail(&slots[i], F_TIMEOUT);
    }
    if (t < end)
      for (int i = 0; i < parallel; i++)
        if (slots[i].state == S_FREE) slot_start(&slots[i], serial++, 64);
  }
  double secs = (double)(t - start) / 1e9;
  printf("{\"mode\":\"cps\",\"parallel\":%d,\"seconds\":%.3f,\"connections\":%llu,\"cps\":%.1f,", parallel, secs,
         (unsigned long long)ok, (double)ok / secs);
  print_lat(&lat);
  printf(",");
  print_fails();
  printf(",");
  print_rusage();
  printf("}\n");
  return 0;
}

/**
 * Handles epoll events of idle-scenario slots: a slot whose byte came back is
 * counted in *ok and parked open (no longer watched). Returns how many slots
 * finished, successfully or not.
 */
static int idle_events(struct epoll_event *evs, int n, uint64_t *ok) {
  int finished = 0;
  for (int k = 0; k < n; k++) {
    slot_t *s = evs[k].data.ptr;
    int done = slot_event(s) == 1;
    if (done) {
      (*ok)++;
      s->state = S_OPEN;
      slot_unwatch(s);
    }
    if (done || s->state == S_FREE) finished++;
  }
  return finished;
}

/** Round-trips one byte on every open slot at once; returns how many answered correctly. */
static uint64_t idle_check(slot_t *slots, int conns, uint8_t byte, double timeout_s) {
  int pending = 0;
  uint64_t ok = 0;
  for (int i = 0; i < conns; i++) {
    slot_t *s = &slots[i];
    if (s->state != S_OPEN) continue;
    s->msg[0] = byte;
    s->size = 1;
    s->got = 0;
    s->state = S_SENT;
    if (s->ssl) {
      s->written = 0;
      int r = slot_tls_exchange(s);
      if (r == 1) {
        ok++;
        s->state = S_OPEN;
        slot_unwatch(s);
      }
      if (r == 0) pending++;
      continue;
    }
    if (write(s->fd, s->msg, 1) != 1) {
      fails[F_WRITE]++;
      s->state = S_FREE;
      continue;
    }
    slot_watch(s, EPOLLIN);
    pending++;
  }
  uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
  struct epoll_event evs[1024];
  while (pending > 0 && now_ns() < deadline) {
    int n = epoll_wait(ep, evs, 1024, 100);
    pending -= idle_events(evs, n, &ok);
  }
  fails[F_TIMEOUT] += (uint64_t)pending;
  return ok;
}

static void wait_stdin_line(void) {
  char line[64];
  if (!fgets(line, sizeof line, stdin)) die("stdin closed");
}

static int run_idle(int conns, int parallel) {
  slot_t *slots = calloc((size_t)conns, sizeof *slots);
  if (!slots) die("out of memory");
  ep = epoll_create1(EPOLL_CLOEXEC);
  const uint64_t timeout = 10000000000ull;
  // Open: connect, then one byte there and back, so a connection counts as
  // open only when the proxy has accepted it and connected its upstream leg.
  uint64_t start = now_ns(), ok = 0, t = start, last_sweep = start;
  int next = 0, active = 0;
  struct epoll_event evs[1024];
  while (next < conns || active > 0) {
    while (active < parallel && next < conns) {
      slot_t *s = &slots[next];
      s->fd = -1;
      slot_start(s, (uint64_t)next, 1);
      next++;
      if (s->state != S_FREE) active++;
    }
    int n = epoll_wait(ep, evs, 1024, 100);
    t = now_ns();
    active -= idle_events(evs, n, &ok);
    if (t - last_sweep > 100000000ull) {
      last_sweep = t;
      for (int i = 0; i < next; i++)
        if (slots[i].state != S_FREE && slots[i].state != S_OPEN && t - slots[i].t0 > timeout) {
          slot_fail(&slots[i], F_TIMEOUT);
          active--;
        }
    }
  }
  printf("{\"phase\":\"opened\",\"conns\":%d,\"open\":%llu,\"openMs\":%.1f,", conns, (unsigned long long)ok,
         (double)(t - start) / 1e6);
  print_fails();
  printf("}\n");
  fflush(stdout);
  wait_stdin_line();
  uint64_t c0 = now_ns();
  uint64_t checked = idle_check(slots, conns, 'k', 20.0);
  printf("{\"phase\":\"checked\",\"conns\":%d,\"open\":%llu,\"working\":%llu,\"checkMs\":%.1f,", conns,
         (unsigned long long)ok, (unsigned long long)checked, (double)(now_ns() - c0) / 1e6);
  print_fails();
  printf(",");
  print_rusage();
  printf("}\n");
  fflush(stdout);
  for (int i = 0; i < conns; i++)
    if (slots[i].fd >= 0 && slots[i].state != S_FREE) tls_drop(slots[i].ssl, slots[i].fd);
  return 0;
}

// ---------------------------------------------------------------- bulk

typedef struct {
  int up;
  double duration;
  uint64_t bytes, bad, ns;
  int failed;
  const char *why;
} bulk_t;

/** Writes all of buf to the stream (TLS when ssl is set); -1 with b->why set on failure. */
static int bulk_write(bulk_t *b, int fd, SSL *ssl, const void *buf, size_t n) {
  int kind;
  if (ssl ? tls_write_all(ssl, buf, n, &kind) == 0 : write_all(fd, buf, n) == 0) return 0;
  b->why = ssl ? fail_names[kind] : strerror(errno);
  return -1;
}

/** Up to n bytes from the stream: > 0 bytes, 0 at a clean end (FIN; with TLS, close_notify), -1 with b->why set. */
static ssize_t bulk_read(bulk_t *b, int fd, SSL *ssl, void *buf, size_t n) {
  if (!ssl) {
    for (;;) {
      ssize_t r = read(fd, buf, n);
      if (r >= 0) return r;
      if (errno == EINTR) continue;
      b->why = strerror(errno);
      return -1;
    }
  }
  int r = SSL_read(ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n));
  if (r > 0) return r;
  if (SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN) return 0;
  int kind = tls_fail_kind(ssl, r);
  // A FIN without close_notify: every byte may have arrived, but the stream did not end cleanly.
  b->why = kind == F_EOF ? "EOF without close_notify" : fail_names[kind];
  return -1;
}

static void *bulk_stream(void *arg) {
  bulk_t *b = arg;
  uint8_t hdr[HDR_LEN] = {0};
  int fd = connect_blocking();
  if (fd < 0) {
    b->failed = 1;
    b->why = strerror(errno);
    return NULL;
  }
  SSL *ssl = NULL;
  if (tls_ctx) {
    ssl = tls_new(fd);
    int r = ssl ? SSL_connect(ssl) : 0;
    if (r != 1) {
      if (ssl) tls_fail_kind(ssl, r);
      b->failed = 1;
      b->why = tls_first_error[0] ? tls_first_error : "TLS handshake failed";
      tls_drop(ssl, fd);
      return NULL;
    }
  }
  uint32_t ms = (uint32_t)(b->duration * 1000);
  memcpy(hdr, b->up ? "\0SNK" : "\0SRC", 4);
  hdr[4] = (uint8_t)ms;
  hdr[5] = (uint8_t)(ms >> 8);
  hdr[6] = (uint8_t)(ms >> 16);
  hdr[7] = (uint8_t)(ms >> 24);
  uint64_t t0 = now_ns();
  if (bulk_write(b, fd, ssl, hdr, sizeof hdr) < 0) {
    b->failed = 1;
    b->why = "header write";
    tls_drop(ssl, fd);
    return NULL;
  }
  if (b->up) {
    uint64_t end = t0 + (uint64_t)(b->duration * 1e9);
    while (now_ns() < end) {
      if (ssl) {
        if (bulk_write(b, fd, ssl, pat + b->bytes % PAT_LEN, MAXIO) < 0) {
          b->failed = 1;
          break;
        }
        b->bytes += MAXIO;
        continue;
      }
      ssize_t w = write(fd, pat + b->bytes % PAT_LEN, MAXIO);
      if (w < 0) {
        if (errno == EINTR) continue;
        b->failed = 1;
        b->why = strerror(errno);
        break;
      }
      b->bytes += (uint64_t)w;
    }
    // The half-close the sink answers: with TLS, close_notify then FIN (TLS
    // 1.3 lets the peer go on sending after our close_notify).
    if (ssl && !b->failed && SSL_shutdown(ssl) < 0) {
      tls_fail_kind(ssl, -1);
      b->failed = 1;
      b->why = "close_notify not sent";
    }
    shutdown(fd, SHUT_WR);
    uint8_t t[HDR_LEN];
    int kind = F_OTHER;
    if (!b->failed && (ssl ? tls_read_all(ssl, t, sizeof t, &kind) : read_all(fd, t, sizeof t)) < 0) {
      b->failed = 1;
      b->why = "no trailer from the sink";
    } else if (!b->failed) {
      uint64_t got = get_u64(t), bad = get_u64(t + 8);
      b->bad = bad;
      if (got != b->bytes || bad != 0) {
        b->failed = 1;
        b->why = got != b->bytes ? "sink byte count differs" : "sink saw wrong bytes";
      }
    }
  } else {
    uint8_t *buf = malloc(MAXIO);
    for (;;) {
      ssize_t r = bulk_read(b, fd, ssl, buf, MAXIO);
      if (r == 0) break;
      if (r < 0) {
        b->failed = 1;
        break;
      }
      b->bad += pattern_mismatch(buf, (size_t)r, b->bytes);
      b->bytes += (uint64_t)r;
    }
    free(buf);
    if (b->bad) {
      b->failed = 1;
      b->why = "wrong bytes from the source";
    }
  }
  b->ns = now_ns() - t0;
  tls_drop(ssl, fd);
  return NULL;
}

static int run_bulk(int up, double duration, int streams) {
  bulk_t *bs = calloc((size_t)streams, sizeof *bs);
  pthread_t *th = calloc((size_t)streams, sizeof *th);
  if (!bs || !th) die("out of memory");
  for (int i = 0; i < streams; i++) {
    bs[i].up = up;
    bs[i].duration = duration;
    pthread_create(&th[i], NULL, bulk_stream, &bs[i]);
  }
  uint64_t bytes = 0, maxns = 0, bad = 0;
  int failed = 0;
  const char *why = "";
  for (int i = 0; i < streams; i++) {
    pthread_join(th[i], NULL);
    bytes += bs[i].bytes;
    bad += bs[i].bad;
    if (bs[i].ns > maxns) maxns = bs[i].ns;
    if (bs[i].failed) {
      failed++;
      why = bs[i].why;
    }
  }
  double secs = (double)maxns / 1e9;
  printf("{\"mode\":\"bulk\",\"dir\":\"%s\",\"streams\":%d,\"seconds\":%.3f,\"bytes\":%llu,\"mbps\":%.1f,"
         "\"badBytes\":%llu,\"failed\":%d,\"why\":\"%s\",",
         up ? "up" : "down", streams, secs, (unsigned long long)bytes, secs > 0 ? (double)bytes / secs / 1e6 : 0,
         (unsigned long long)bad, failed, why);
  print_rusage();
  printf("}\n");
  return 0;
}

// ---------------------------------------------------------------- main

int main(int argc, char **argv) {
  if (argc < 2) die("usage: kpbench server|rr|cps|bulk|idle --port P [options]");
  signal(SIGPIPE, SIG_IGN);
  make_pattern();
  const char *mode = argv[1], *tls_ca = NULL;
  int conns = 1, parallel = 32, streams = 1, up = 1;
  size_t size = 64;
  double duration = 3, warmup = 0.5;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) die("%s needs a value", a);
    i++;
    if (!strcmp(a, "--port")) port = atoi(v);
    else if (!strcmp(a, "--host")) host = v;
    else if (!strcmp(a, "--conns")) conns = atoi(v);
    else if (!strcmp(a, "--parallel")) parallel = atoi(v);
    else if (!strcmp(a, "--streams")) streams = atoi(v);
    else if (!strcmp(a, "--size")) size = (size_t)atoi(v);
    else if (!strcmp(a, "--duration")) duration = atof(v);
    else if (!strcmp(a, "--warmup")) warmup = atof(v);
    else if (!strcmp(a, "--tls-ca")) tls_ca = v;
    else if (!strcmp(a, "--dir")) up = !strcmp(v, "up") ? 1 : !strcmp(v, "down") ? 0 : (die("--dir up|down"), 0);
    else die("unknown option %s", a);
  }
  if (port <= 0) die("--port is required");
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (tls_ca) {
    if (!strcmp(mode, "server") || !strcmp(mode, "rr")) die("--tls-ca is for cps, bulk and idle");
    tls_init(tls_ca);
  }
  if (!strcmp(mode, "server")) run_server();
  if (!strcmp(mode, "rr")) return run_rr(conns, size, duration, warmup);
  if (!strcmp(mode, "cps")) return run_cps(parallel, duration);
  if (!strcmp(mode, "bulk")) return run_bulk(up, duration, streams);
  if (!strcmp(mode, "idle")) return run_idle(conns, parallel);
  die("unknown mode %s", mode);
  return 2;
}
